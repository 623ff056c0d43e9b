//! Publish errors and their classification.

use std::fmt;

/// What the relay does about an error. Each connector maps its own errors onto these
/// three classes in exactly one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Transient (throttling, a broker restart, a timeout): try the same events again later.
    Retryable,
    /// This event can never be published as it is (too large, bad destination, not
    /// authorised): it takes the dead-letter outcome; later events go on.
    Permanent,
    /// The connector itself is unusable (fenced or broken producer, bad credentials
    /// for everything): stop publishing, acknowledge nothing further, restart from the
    /// last confirmed position.
    Fatal,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Fatal => "fatal",
        }
    }
}

/// An error from a connector, already classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PublishError {
    pub class: ErrorClass,
    /// A short, stable, label-safe name for metrics (`message_too_large`, `unknown_topic`...).
    pub kind: &'static str,
    /// Human-readable detail; never contains credentials.
    pub message: String,
}

impl PublishError {
    pub fn new(class: ErrorClass, kind: &'static str, message: impl Into<String>) -> Self {
        PublishError {
            class,
            kind,
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {})",
            self.message,
            self.kind,
            self.class.as_str()
        )
    }
}
