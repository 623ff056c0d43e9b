//! SNS/SQS helpers for tests against the emulator started by `deploy/local/aws.sh`.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;

use crate::kafka::Record;

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

pub fn endpoint() -> String {
    std::env::var("OUTBOX_RELAY_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:19324".into())
}

/// The environment a relay process needs to talk to the emulator.
pub fn relay_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
}

/// The fast emulator (fauxqs), for the larger runs.
pub fn fauxqs_endpoint() -> String {
    std::env::var("OUTBOX_RELAY_FAUXQS_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:19325".into())
}

/// An SDK configuration for moto; fails clearly when it is not running.
pub async fn sdk() -> aws_config::SdkConfig {
    sdk_at(&endpoint()).await
}

/// An SDK configuration for the emulator at `endpoint`.
pub async fn sdk_at(endpoint: &str) -> aws_config::SdkConfig {
    let addr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    if tokio::net::TcpStream::connect(&addr).await.is_err() {
        panic!("no SNS/SQS emulator at {endpoint}: start it with deploy/local/aws.sh start (moto) or fauxqs-start (fauxqs)");
    }
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

/// Creates a queue (FIFO when the name ends in `.fifo`); returns (URL, ARN).
pub async fn create_queue(sdk: &aws_config::SdkConfig, name: &str) -> (String, String) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut req = sqs.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        req = req.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let url = req.send().await.expect("create queue").queue_url.unwrap();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap();
    (url, attrs[&QueueAttributeName::QueueArn].clone())
}

/// Creates a topic subscribed by `queue_arn` with raw message delivery; returns the topic ARN.
pub async fn create_topic_into(sdk: &aws_config::SdkConfig, name: &str, queue_arn: &str) -> String {
    let sns = aws_sdk_sns::Client::new(sdk);
    let mut req = sns.create_topic().name(name);
    if name.ends_with(".fifo") {
        req = req.attributes("FifoTopic", "true");
    }
    let arn = req.send().await.expect("create topic").topic_arn.unwrap();
    sns.subscribe()
        .topic_arn(&arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");
    arn
}

/// Receives (and deletes) messages until `done` holds or `idle` passes without any, as
/// [`Record`]s: `topic` = `label`, `key` = the `aggregateid` attribute, `payload` = the
/// body, `headers` = the message attributes.
pub async fn receive(
    sdk: &aws_config::SdkConfig,
    queue_url: &str,
    label: &str,
    idle: Duration,
    mut done: impl FnMut(&[Record]) -> bool,
) -> Vec<Record> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut out: Vec<Record> = Vec::new();
    let mut last = Instant::now();
    while !done(&out) && last.elapsed() < idle {
        let resp = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .visibility_timeout(600)
            .send()
            .await
            .expect("receive");
        let messages = resp.messages.unwrap_or_default();
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        last = Instant::now();
        let mut entries = Vec::new();
        for m in messages {
            let headers: Vec<(String, Vec<u8>)> = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.string_value.unwrap_or_default().into_bytes()))
                .collect();
            let key = headers
                .iter()
                .find(|(k, _)| k == "aggregateid")
                .map(|(_, v)| v.clone());
            out.push(Record {
                topic: label.to_string(),
                partition: 0,
                offset: out.len() as i64,
                key,
                payload: m.body.map(String::into_bytes),
                headers,
                timestamp_ms: None,
            });
            entries.push(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(entries.len().to_string())
                    .receipt_handle(m.receipt_handle.unwrap())
                    .build()
                    .unwrap(),
            );
        }
        sqs.delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("delete batch");
    }
    out
}

/// An S3 client for the emulator (moto serves S3 on the same endpoint; path-style).
pub fn s3(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Creates a bucket.
pub async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");
}

/// Every key under `prefix`.
pub async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list objects");
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        match out.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => return keys,
        }
    }
}

/// The bytes of an object.
pub async fn get_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get s3://{bucket}/{key}: {e:?}"));
    out.body.collect().await.expect("object body").to_vec()
}

/// Deletes a bucket the test created, and its objects.
pub async fn delete_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    for key in list_keys(s3, bucket, "").await {
        let _ = s3.delete_object().bucket(bucket).key(key).send().await;
    }
    let _ = s3.delete_bucket().bucket(bucket).send().await;
}
