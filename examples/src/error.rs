//! The example's error type: what failed, with the underlying cause.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {}", db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{service} {operation}: {message}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        message: String,
    },
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("event {id}: {reason}")]
    BadEvent { id: String, reason: String },
    #[error("{0}")]
    Setup(String),
}

impl Error {
    /// An AWS SDK error, with the SDK's full error chain as text.
    pub fn aws<E: std::error::Error>(
        service: &'static str,
        operation: &'static str,
        err: E,
    ) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Error::Aws {
            service,
            operation,
            message,
        }
    }
}

/// tokio-postgres prints a server error as "db error"; the server's message says what.
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}
