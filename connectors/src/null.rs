//! A sink that acknowledges everything at once: for benchmarks and dry runs.

use std::time::Duration;

use futures::FutureExt;

use crate::{Delivery, EventOutcome, OutboxEvent, PublishError, Publisher};

#[derive(Debug, Default, Clone)]
pub struct NullPublisher;

#[async_trait::async_trait]
impl Publisher for NullPublisher {
    fn kind(&self) -> &'static str {
        "null"
    }

    fn validate_destination(&self, _destination: &str) -> Result<(), String> {
        Ok(())
    }

    async fn accept(&self, batch: Vec<OutboxEvent>) -> Result<Delivery, PublishError> {
        let outcomes = batch
            .into_iter()
            .map(|event| EventOutcome {
                event,
                result: Ok(()),
            })
            .collect();
        Ok(futures::future::ready(outcomes).boxed())
    }

    async fn flush(&self, _timeout: Duration) -> Result<(), PublishError> {
        Ok(())
    }

    async fn probe(&self, _timeout: Duration) -> Result<(), PublishError> {
        Ok(())
    }
}
