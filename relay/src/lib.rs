//! outbox-relay library.
