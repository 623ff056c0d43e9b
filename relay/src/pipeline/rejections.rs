//! Permanent rejections remembered across sessions.
//!
//! Some rejections take the connector down with them: a Kafka broker refusing a record
//! makes the idempotent, gap-less producer fatal, so the dead-letter copy cannot be sent
//! on that producer and the session restarts. The replay would send the same event to the
//! same broker and fail the same way, forever. Remembering the rejection lets the next
//! session dead-letter the event directly, without offering it to the broker again.

use std::collections::HashMap;
use std::sync::Mutex;

use outbox_connectors::{OutboxEvent, PublishError, Text};

/// Far more than a relay meets between restarts; when full, it starts over (a forgotten
/// rejection costs one more session restart, never an event).
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct Rejections {
    by_event: Mutex<HashMap<(Text, u64), PublishError>>,
}

impl Rejections {
    pub fn remember(&self, event: &OutboxEvent, error: &PublishError) {
        let mut map = self.by_event.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CAPACITY {
            map.clear();
        }
        // A copy of the id: the event's is a slice of its buffer (payload included),
        // which up to CAPACITY remembered rejections would otherwise keep alive.
        map.insert(
            (Text::from(event.id.as_str()), event.commit_lsn),
            error.clone(),
        );
    }

    /// The rejection of this event (same id, same transaction), if one was seen.
    pub fn get(&self, event: &OutboxEvent) -> Option<PublishError> {
        let map = self.by_event.lock().unwrap_or_else(|p| p.into_inner());
        if map.is_empty() {
            return None;
        }
        map.get(&(event.id.clone(), event.commit_lsn)).cloned()
    }
}
