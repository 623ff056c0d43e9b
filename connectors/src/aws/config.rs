//! SNS / SQS connector configuration (`sink.sns` / `sink.sqs`).

use std::time::Duration;

use serde::Deserialize;

/// `sink.sns` or `sink.sqs`: where and how to publish. Both services take the same keys.
///
/// Credentials are never configured here: they come from the AWS default chain
/// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, `AWS_PROFILE` and the
/// shared config files, web identity / IRSA via `AWS_WEB_IDENTITY_TOKEN_FILE`, ECS and EC2
/// instance metadata) and are never logged.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// AWS region, e.g. `eu-west-1`. Default: the default chain (`AWS_REGION`,
    /// `AWS_DEFAULT_REGION`, the profile); starting fails if none is found.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL override, for emulators (`http://127.0.0.1:19324`) and VPC
    /// endpoints. Default: the service's regional endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Destinations are FIFO topics / queues (their names end in `.fifo`). Every
    /// destination must match: `validate_destination` rejects a standard destination when
    /// `true` and a FIFO one when `false`. FIFO messages carry `MessageGroupId` = aggregate
    /// id and `MessageDeduplicationId` = event id (see the module docs for the mapping).
    #[serde(default)]
    pub fifo: bool,
    /// Maximum number of batch requests in flight at once (across all aggregates).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// `true` (default): the message body is the outbox payload exactly (it must be UTF-8
    /// text, as SNS/SQS bodies are strings). `false`: the body is a JSON envelope
    /// `{"id","type","aggregatetype","aggregateid","payload"}` where `payload` is the
    /// payload's JSON value if it is valid JSON, else a JSON string if it is UTF-8, else
    /// `null` and the bytes base64-encoded in `"payload_base64"`.
    #[serde(default = "default_true")]
    pub raw_payload: bool,
    /// Largest message (body + attribute names, types and values) and largest batch
    /// request accepted, in bytes; bigger events fail permanently before being sent.
    /// Default 262144 (256 KiB, the SNS and classic SQS limit).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// First retry delay after a retryable failure (throttling, 5xx, timeouts), in ms;
    /// doubled per attempt up to `retry_max_backoff_ms`, with jitter. Default 100.
    #[serde(default = "default_retry_initial_backoff_ms")]
    pub retry_initial_backoff_ms: u64,
    /// Largest retry delay, in ms. Default 20000.
    #[serde(default = "default_retry_max_backoff_ms")]
    pub retry_max_backoff_ms: u64,
    /// How long the connector keeps retrying an event before reporting it as a
    /// `Retryable` failure, in ms. `0` (default) = retry forever: an outage stalls the
    /// relay (its in-flight budget fills and it stops reading the WAL) instead of failing
    /// events, like the Kafka connector's `message.timeout.ms=0`.
    #[serde(default)]
    pub max_retry_elapsed_ms: u64,
    /// How long errors that are usually permanent but can be transient are retried before
    /// they count as permanent (and the relay dead-letters the event), in ms: not
    /// authorized (403), topic or queue not found (404), KMS key disabled / not found /
    /// pending, unknown 4xx such as a proxy's 407 — what infrastructure as code re-creating
    /// a topic, or a key or policy rotation, look like for a while. They are retried like
    /// throttling (per aggregate, in order, with the same backoff) until the window has
    /// passed since the aggregate's first such failure, or since the destination's first
    /// such failure with nothing delivered to it in between; later failures then count as
    /// permanent at once, until something is delivered again. `0` = permanent at once.
    /// Errors about the message itself (too large, invalid parameter) are never retried.
    /// Default 300000 (5 minutes).
    #[serde(default = "default_transient_error_window_ms")]
    pub transient_error_window_ms: u64,
    /// The circuit breaker per destination (topic / queue): after `failure_threshold`
    /// consecutive failed requests nothing is sent there for a cool-down (from
    /// `open_initial_ms`, doubling up to `open_max_ms`, jittered), then one probe request.
    /// Defaults 5 / 1000 / 60000; `failure_threshold: 0` turns it off.
    #[serde(default)]
    pub circuit_breaker: crate::policy::BreakerConfig,
    /// Timeout of one HTTP attempt, in ms. Default 30000.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// TCP/TLS connect timeout, in ms. Default 5000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_max_concurrency() -> usize {
    16
}
fn default_true() -> bool {
    true
}
fn default_max_message_bytes() -> usize {
    262_144
}
fn default_retry_initial_backoff_ms() -> u64 {
    100
}
fn default_retry_max_backoff_ms() -> u64 {
    20_000
}
fn default_transient_error_window_ms() -> u64 {
    300_000
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}

/// The SNS connector's configuration (`sink.sns`).
pub type SnsConfig = AwsConfig;
/// The SQS connector's configuration (`sink.sqs`).
pub type SqsConfig = AwsConfig;

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: None,
            endpoint: None,
            fifo: false,
            max_concurrency: default_max_concurrency(),
            raw_payload: true,
            max_message_bytes: default_max_message_bytes(),
            retry_initial_backoff_ms: default_retry_initial_backoff_ms(),
            retry_max_backoff_ms: default_retry_max_backoff_ms(),
            max_retry_elapsed_ms: 0,
            transient_error_window_ms: default_transient_error_window_ms(),
            circuit_breaker: crate::policy::BreakerConfig::default(),
            request_timeout_ms: default_request_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
        }
    }
}

impl AwsConfig {
    /// Checks the values; the error names the key (`prefix` is `sink.sns` or `sink.sqs`).
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if self.max_concurrency == 0 || self.max_concurrency > 1024 {
            return Err(format!("{prefix}.max_concurrency: must be 1 to 1024"));
        }
        if self.max_message_bytes < 1024 || self.max_message_bytes > 1_048_576 {
            return Err(format!(
                "{prefix}.max_message_bytes: must be 1024 to 1048576"
            ));
        }
        if self.retry_initial_backoff_ms == 0
            || self.retry_max_backoff_ms < self.retry_initial_backoff_ms
        {
            return Err(format!(
                "{prefix}.retry_initial_backoff_ms must be > 0 and <= retry_max_backoff_ms"
            ));
        }
        if self.request_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(format!(
                "{prefix}.request_timeout_ms / connect_timeout_ms: must be > 0"
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(format!(
                    "{prefix}.endpoint: {endpoint:?} must be an http:// or https:// URL"
                ));
            }
        }
        if let Some(region) = &self.region {
            if region.is_empty()
                || !region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(format!(
                    "{prefix}.region: {region:?} is not a region name like \"eu-west-1\""
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn retry_initial_backoff(&self) -> Duration {
        Duration::from_millis(self.retry_initial_backoff_ms)
    }
    pub(crate) fn retry_max_backoff(&self) -> Duration {
        Duration::from_millis(self.retry_max_backoff_ms)
    }
    pub(crate) fn transient_error_window(&self) -> Duration {
        Duration::from_millis(self.transient_error_window_ms)
    }
    pub(crate) fn max_retry_elapsed(&self) -> Option<Duration> {
        (self.max_retry_elapsed_ms > 0).then(|| Duration::from_millis(self.max_retry_elapsed_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let config: AwsConfig = serde_json::from_str(r#"{"region":"us-east-1"}"#).unwrap();
        assert_eq!(config.max_concurrency, 16);
        assert!(config.raw_payload);
        assert!(!config.fifo);
        assert_eq!(config.max_retry_elapsed_ms, 0);
        assert_eq!(config.transient_error_window_ms, 300_000);
        assert!(config.validate("sink.sns").is_ok());
        let err = serde_json::from_str::<AwsConfig>(r#"{"regoin":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn validate_names_the_key() {
        let config = AwsConfig {
            max_concurrency: 0,
            ..AwsConfig::default()
        };
        assert!(config
            .validate("sink.sqs")
            .unwrap_err()
            .starts_with("sink.sqs.max_concurrency"));
        let config = AwsConfig {
            endpoint: Some("localhost:4566".into()),
            ..AwsConfig::default()
        };
        assert!(config
            .validate("sink.sqs")
            .unwrap_err()
            .starts_with("sink.sqs.endpoint"));
    }
}
