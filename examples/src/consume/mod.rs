//! Consumer loops. A handler runs the consumer's database transaction for one delivery;
//! the loop acknowledges the delivery (Kafka offset commit, SQS delete) only after the
//! handler returned Ok, i.e. after the transaction committed. A failing handler (database
//! restarting) is retried with the same delivery, so nothing is skipped.

pub mod kafka;
pub mod sqs;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::events::Delivery;

pub type Handler =
    Arc<dyn Fn(Delivery) -> Pin<Box<dyn Future<Output = crate::Result<()>> + Send>> + Send + Sync>;

/// Wraps an async function as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = crate::Result<()>> + Send + 'static,
{
    Arc::new(move |d| Box::pin(f(d)))
}

/// Runs `h` until it succeeds, backing off between attempts.
pub(crate) async fn apply_until_ok(consumer: &str, h: &Handler, d: &Delivery) {
    let mut wait = Duration::from_millis(100);
    loop {
        match h(d.clone()).await {
            Ok(()) => return,
            // An event this consumer cannot read will never apply: retrying would block
            // the partition or queue forever. It is logged and left behind.
            Err(e @ crate::Error::BadEvent { .. }) => {
                eprintln!("{consumer}: skipping unreadable event: {e}");
                return;
            }
            Err(e) => {
                eprintln!(
                    "{consumer}: {} {} not applied yet, retrying in {wait:?}: {e}",
                    d.event_type, d.id
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}
