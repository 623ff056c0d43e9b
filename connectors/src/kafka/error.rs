//! The one place Kafka errors are classified.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::{ErrorClass, PublishError};

/// Maps a librdkafka error onto the relay's three classes.
///
/// Anything not known to be limited to one message is `Fatal`: the relay then restarts
/// from its last acknowledged position, which may duplicate but never skips an event.
pub fn classify(err: &KafkaError) -> PublishError {
    use ErrorClass::*;
    use RDKafkaErrorCode as C;
    let code = err.rdkafka_error_code();
    let (class, kind) = match code {
        Some(C::QueueFull) => (Retryable, "queue_full"),
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::InvalidRecord) => {
            (Permanent, "message_too_large")
        }
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition) => {
            (Permanent, "unknown_topic")
        }
        Some(C::InvalidTopic) => (Permanent, "invalid_topic"),
        Some(C::TopicAuthorizationFailed) => (Permanent, "topic_authorization_failed"),
        Some(C::MessageTimedOut) => (Fatal, "message_timed_out"),
        Some(
            C::SaslAuthenticationFailed
            | C::Authentication
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed,
        ) => (Fatal, "authentication"),
        Some(C::Fatal | C::GaplessGuarantee | C::OutOfOrderSequenceNumber | C::ProducerFenced) => {
            (Fatal, "producer_fatal")
        }
        _ => (Fatal, "kafka"),
    };
    PublishError::new(class, kind, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_level_errors_are_permanent_and_the_rest_fatal() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(classify(&too_large).class, ErrorClass::Permanent);
        assert_eq!(classify(&too_large).kind, "message_too_large");
        let full = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
        assert_eq!(classify(&full).class, ErrorClass::Retryable);
        let gap = KafkaError::MessageProduction(RDKafkaErrorCode::GaplessGuarantee);
        assert_eq!(classify(&gap).class, ErrorClass::Fatal);
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(classify(&timeout).class, ErrorClass::Fatal);
    }
}
