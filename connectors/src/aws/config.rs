//! SNS / SQS connector configuration (`sink.sns` / `sink.sqs`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `sink.sns` or `sink.sqs`: where and how to publish. Both services take the same keys.
///
/// Credentials are never configured here: they come from the AWS default chain
/// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, `AWS_PROFILE` and the
/// shared config files, web identity / IRSA via `AWS_WEB_IDENTITY_TOKEN_FILE`, ECS and EC2
/// instance metadata) and are never logged.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
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
    /// request accepted, in bytes; bigger events fail permanently before being sent, or
    /// are offloaded to S3 (`large_payloads`). Default 262144 (256 KiB). At most the
    /// service's limit: 262144 for SNS, 1048576 (1 MiB, since August 2025) for SQS,
    /// whose queues accept up to their `MaximumMessageSize` attribute.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// First retry delay after a retryable failure (throttling, 5xx, timeouts), in ms;
    /// doubled per attempt up to `retry_max_backoff_ms`, with jitter. Default 100.
    #[serde(
        default = "default_retry_initial_backoff",
        rename = "retry_initial_backoff_ms",
        with = "crate::duration_ms"
    )]
    pub retry_initial_backoff: Duration,
    /// Largest retry delay, in ms. Default 20000.
    #[serde(
        default = "default_retry_max_backoff",
        rename = "retry_max_backoff_ms",
        with = "crate::duration_ms"
    )]
    pub retry_max_backoff: Duration,
    /// How long the connector keeps retrying an event before reporting it as a
    /// `Retryable` failure, in ms. `0` (default) = retry forever: an outage stalls the
    /// relay (its in-flight budget fills and it stops reading the WAL) instead of failing
    /// events, like the Kafka connector's `message.timeout.ms=0`.
    #[serde(default)]
    #[serde(rename = "max_retry_elapsed_ms", with = "crate::duration_ms")]
    pub max_retry_elapsed: Duration,
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
    #[serde(
        default = "default_transient_error_window",
        rename = "transient_error_window_ms",
        with = "crate::duration_ms"
    )]
    pub transient_error_window: Duration,
    /// The circuit breaker per destination (topic / queue): after `failure_threshold`
    /// consecutive failed requests nothing is sent there for a cool-down (from
    /// `open_initial_ms`, doubling up to `open_max_ms`, jittered), then one probe request.
    /// Defaults 5 / 1000 / 60000; `failure_threshold: 0` turns it off.
    #[serde(default)]
    pub circuit_breaker: crate::policy::BreakerConfig,
    /// What to do with a message over `max_message_bytes` (or over
    /// `large_payloads.threshold_bytes`): `reject` it (default; the event fails
    /// permanently, and the relay's `on_invalid` policy decides), or store its body in S3
    /// and send a pointer in the AWS extended client libraries' format.
    #[serde(default)]
    pub large_payloads: LargePayloads,
    /// Timeout of one HTTP attempt, in ms. Default 30000.
    #[serde(
        default = "default_request_timeout",
        rename = "request_timeout_ms",
        with = "crate::duration_ms"
    )]
    pub request_timeout: Duration,
    /// TCP/TLS connect timeout, in ms. Default 5000.
    #[serde(
        default = "default_connect_timeout",
        rename = "connect_timeout_ms",
        with = "crate::duration_ms"
    )]
    pub connect_timeout: Duration,
}

/// The largest message the service accepts, body and attributes counted: SNS 256 KiB;
/// SQS 1 MiB since August 2025 (a queue accepts up to its `MaximumMessageSize`).
/// `prefix` is `sink.sns` or `sink.sqs`.
pub fn service_limit(prefix: &str) -> usize {
    if prefix.ends_with("sns") {
        SNS_MAX_MESSAGE_BYTES
    } else {
        SQS_MAX_MESSAGE_BYTES
    }
}

/// SNS: 256 KiB per message and per PublishBatch request.
pub const SNS_MAX_MESSAGE_BYTES: usize = 262_144;
/// SQS: 1 MiB per message and per SendMessageBatch request (was 256 KiB before August 2025).
pub const SQS_MAX_MESSAGE_BYTES: usize = 1_048_576;

/// `large_payloads.mode`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LargePayloadMode {
    /// A message over the limit fails permanently (the relay's `on_invalid` decides).
    #[default]
    Reject,
    /// A message over the threshold (or every message, with `always`) has its body stored
    /// in S3 and a pointer sent instead (the claim-check pattern).
    S3,
}

/// `sink.{sns,sqs}.large_payloads`: claim-check offload of large bodies to S3, in the
/// wire format of the Amazon SQS / SNS Extended Client Libraries (Java, Python), so their
/// consumers read the original body with no code change. See `offload.rs`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LargePayloads {
    /// `reject` (default) or `s3`.
    #[serde(default)]
    pub mode: LargePayloadMode,
    /// The bucket the bodies are stored in (required with `mode: s3`). Objects are never
    /// deleted by the relay: expire them with a lifecycle rule on the prefix.
    #[serde(default)]
    pub bucket: Option<String>,
    /// Prepended to the object key, which is otherwise the event id (so a replay after a
    /// crash overwrites the same object). Default empty.
    #[serde(default)]
    pub prefix: String,
    /// Messages whose body and attributes are larger than this are offloaded, in bytes.
    /// Default `max_message_bytes` (the destination's limit).
    #[serde(default)]
    pub threshold_bytes: Option<usize>,
    /// Offload every message, whatever its size. Default `false`.
    #[serde(default)]
    pub always: bool,
    /// S3 endpoint override (emulators, VPC endpoints). Default the regional S3 endpoint
    /// (`sink.*.endpoint` is not used for S3).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Path-style addressing (`<endpoint>/<bucket>/<key>`), for emulators. Default `false`
    /// (virtual-hosted style).
    #[serde(default)]
    pub force_path_style: bool,
}

impl LargePayloads {
    /// Whether bodies go to S3.
    pub fn offloads(&self) -> bool {
        self.mode == LargePayloadMode::S3
    }

    fn validate(&self, prefix: &str, max_message_bytes: usize) -> Result<(), String> {
        if !self.offloads() {
            let set = [
                self.bucket.is_some().then_some("bucket"),
                (!self.prefix.is_empty()).then_some("prefix"),
                self.threshold_bytes.is_some().then_some("threshold_bytes"),
                self.always.then_some("always"),
                self.endpoint.is_some().then_some("endpoint"),
                self.force_path_style.then_some("force_path_style"),
            ];
            if let Some(key) = set.into_iter().flatten().next() {
                return Err(format!(
                    "{prefix}.{key} is set but {prefix}.mode is reject: set mode: s3 to offload large payloads"
                ));
            }
            return Ok(());
        }
        match &self.bucket {
            None => return Err(format!("{prefix}.bucket: required with mode: s3")),
            Some(bucket) if !valid_bucket(bucket) => {
                return Err(format!(
                    "{prefix}.bucket: {bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)"
                ))
            }
            Some(_) => {}
        }
        // The key is the prefix and an event id of at most 66 characters (see offload.rs);
        // S3 keys are at most 1024 bytes.
        if self.prefix.len() > 900 {
            return Err(format!("{prefix}.prefix: at most 900 bytes"));
        }
        if let Some(threshold) = self.threshold_bytes {
            if threshold == 0 || threshold > max_message_bytes {
                return Err(format!(
                    "{prefix}.threshold_bytes: must be 1 to max_message_bytes ({max_message_bytes}): a message at the threshold is sent as it is"
                ));
            }
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(format!(
                    "{prefix}.endpoint: {endpoint:?} must be an http:// or https:// URL"
                ));
            }
        }
        Ok(())
    }
}

fn valid_bucket(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
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
fn default_retry_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
fn default_retry_max_backoff() -> Duration {
    Duration::from_millis(20_000)
}
fn default_transient_error_window() -> Duration {
    Duration::from_millis(300_000)
}
fn default_request_timeout() -> Duration {
    Duration::from_millis(30_000)
}
fn default_connect_timeout() -> Duration {
    Duration::from_millis(5_000)
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
            retry_initial_backoff: default_retry_initial_backoff(),
            retry_max_backoff: default_retry_max_backoff(),
            max_retry_elapsed: Duration::ZERO,
            transient_error_window: default_transient_error_window(),
            circuit_breaker: crate::policy::BreakerConfig::default(),
            large_payloads: LargePayloads::default(),
            request_timeout: default_request_timeout(),
            connect_timeout: default_connect_timeout(),
        }
    }
}

impl AwsConfig {
    /// Checks the values; the error names the key (`prefix` is `sink.sns` or `sink.sqs`).
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if self.max_concurrency == 0 || self.max_concurrency > 1024 {
            return Err(format!("{prefix}.max_concurrency: must be 1 to 1024"));
        }
        let limit = service_limit(prefix);
        if self.max_message_bytes < 1024 || self.max_message_bytes > limit {
            return Err(format!(
                "{prefix}.max_message_bytes: must be 1024 to {limit} (the service's limit, body and attributes)"
            ));
        }
        self.large_payloads
            .validate(&format!("{prefix}.large_payloads"), self.max_message_bytes)?;
        if self.retry_initial_backoff.is_zero()
            || self.retry_max_backoff < self.retry_initial_backoff
        {
            return Err(format!(
                "{prefix}.retry_initial_backoff_ms must be > 0 and <= retry_max_backoff_ms"
            ));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
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

    /// Messages larger than this (body and attributes) go to S3, when offloading.
    pub(crate) fn offload_threshold(&self) -> usize {
        self.large_payloads
            .threshold_bytes
            .unwrap_or(self.max_message_bytes)
    }
    /// How long an aggregate's retries may go on (`max_retry_elapsed_ms`; 0 = forever).
    pub(crate) fn retry_limit(&self) -> Option<Duration> {
        (!self.max_retry_elapsed.is_zero()).then_some(self.max_retry_elapsed)
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
        assert_eq!(config.max_retry_elapsed, Duration::ZERO);
        assert_eq!(config.transient_error_window, Duration::from_secs(300));
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

    #[test]
    fn limits_per_service() {
        let config = AwsConfig {
            max_message_bytes: 1_048_576,
            ..AwsConfig::default()
        };
        assert!(config.validate("sink.sqs").is_ok());
        let err = config.validate("sink.sns").unwrap_err();
        assert!(
            err.starts_with("sink.sns.max_message_bytes: must be 1024 to 262144"),
            "{err}"
        );
        let config = AwsConfig {
            max_message_bytes: 1_048_577,
            ..AwsConfig::default()
        };
        assert!(config
            .validate("sink.sqs")
            .unwrap_err()
            .contains("1024 to 1048576"));
    }

    #[test]
    fn large_payloads_keys() {
        let config: AwsConfig = serde_json::from_str(
            r#"{"large_payloads":{"mode":"s3","bucket":"outbox-bodies","prefix":"relay/","always":true}}"#,
        )
        .unwrap();
        assert!(config.large_payloads.offloads());
        assert_eq!(config.offload_threshold(), 262_144);
        assert!(config.validate("sink.sns").is_ok());
        let reject = AwsConfig::default();
        assert!(!reject.large_payloads.offloads());
        for (json, want) in [
            (
                r#"{"mode":"s3"}"#,
                "sink.sqs.large_payloads.bucket: required",
            ),
            (
                r#"{"mode":"s3","bucket":"Bad_Bucket"}"#,
                "sink.sqs.large_payloads.bucket: \"Bad_Bucket\"",
            ),
            (
                r#"{"mode":"s3","bucket":"b-1","threshold_bytes":300000}"#,
                "sink.sqs.large_payloads.threshold_bytes",
            ),
            (
                r#"{"bucket":"b-1"}"#,
                "sink.sqs.large_payloads.bucket is set but sink.sqs.large_payloads.mode is reject",
            ),
        ] {
            let large: LargePayloads = serde_json::from_str(json).unwrap();
            let config = AwsConfig {
                large_payloads: large,
                ..AwsConfig::default()
            };
            let err = config.validate("sink.sqs").unwrap_err();
            assert!(err.starts_with(want), "{json}: {err}");
        }
        let err =
            serde_json::from_str::<LargePayloads>(r#"{"mode":"s3","bukket":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = serde_json::from_str::<LargePayloads>(r#"{"mode":"store"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
