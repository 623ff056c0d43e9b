//! SQS consumer loop: a message is deleted only after the handler's transaction committed.

use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;

use super::{apply_until_ok, Handler};
use crate::events::{Delivery, Origin};
use crate::Error;

pub async fn queue_url(sqs: &aws_sdk_sqs::Client, queue: &str) -> crate::Result<String> {
    Ok(sqs
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .map_err(|e| Error::aws("sqs", "GetQueueUrl", e))?
        .queue_url
        .unwrap_or_default())
}

/// Consumes `queue` forever (long polling).
pub async fn run(
    name: String,
    sdk: aws_config::SdkConfig,
    queue: String,
    handler: Handler,
) -> crate::Result<()> {
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = loop {
        match queue_url(&sqs, &queue).await {
            Ok(u) => break u,
            Err(e) => {
                eprintln!("{name}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    loop {
        let out = match sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(10)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                eprintln!("{name}: {}", Error::aws("sqs", "ReceiveMessage", e));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for m in out.messages() {
            let attrs = m.message_attributes();
            let header = |key: &str| -> Option<String> {
                attrs
                    .and_then(|a| a.get(key))
                    .and_then(|v| v.string_value())
                    .map(str::to_string)
            };
            let origin = Origin::Sqs {
                queue: queue.clone(),
                message_id: m.message_id().unwrap_or_default().to_string(),
            };
            let key = header("aggregateid");
            match Delivery::assemble(header, key, m.body().unwrap_or("null").as_bytes(), origin) {
                Ok(d) => apply_until_ok(&name, &handler, &d).await,
                Err(e) => eprintln!("{name}: skipping unreadable message: {e}"),
            }
            if let Some(receipt) = m.receipt_handle() {
                if let Err(e) = sqs
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                {
                    // Not deleted: it comes back after the visibility timeout (10 s) and the
                    // inbox absorbs it.
                    eprintln!("{name}: {}", Error::aws("sqs", "DeleteMessage", e));
                }
            }
        }
    }
}
