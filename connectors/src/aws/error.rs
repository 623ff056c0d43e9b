//! The one place SNS / SQS errors are classified.
//!
//! Every failure, whether of a whole request (an `SdkError`) or of one entry of a batch
//! response (`Failed[]` with a code and `SenderFault`), goes through [`classify_code`] or
//! [`classify_sdk_error`]:
//!
//! | AWS code (or condition) | Class | `kind` |
//! |---|---|---|
//! | `Throttling`, `ThrottlingException`, `ThrottledException`, `RequestThrottled`, `TooManyRequestsException`, `RequestLimitExceeded`, `SlowDown`, `KMSThrottling*` | Retryable | `throttled` |
//! | `InternalError`, `InternalFailure`, `InternalServerError`, `ServiceUnavailable*`, `RequestTimeout*`, `KMSInternal*`, any HTTP 5xx, unknown code with `SenderFault=false` | Retryable | `server_error` |
//! | timeouts, connection errors, unparseable responses | Retryable | `timeout` / `dispatch` / `bad_response` |
//! | `InvalidClientTokenId`, `UnrecognizedClientException`, `SignatureDoesNotMatch`, `IncompleteSignature`, `MissingAuthenticationToken`, `InvalidAccessKeyId`, `ExpiredToken*`, `InvalidSecurity`, no credentials found | Fatal | `invalid_credentials` |
//! | `AuthorizationError`, `AccessDenied*`, `KMSAccessDenied*` | Permanent | `not_authorized` |
//! | `NotFound*`, `QueueDoesNotExist`, `NonExistentQueue`, `KMSNotFound*`, `KMSDisabled*`, `QueueDeletedRecently` | Permanent | `destination_not_found` |
//! | `MessageTooLong`, `BatchRequestTooLong`, `BatchEntryTooLong`, detected before sending | Permanent | `message_too_large` |
//! | `InvalidParameter*`, `ValidationError`, `ValidationException`, `InvalidMessageContents`, `InvalidAttribute*`, `InvalidBatchEntryId`, `UnsupportedOperation` | Permanent | `invalid_parameter` |
//! | any other code with `SenderFault=true` or HTTP 4xx (429 is throttling) | Permanent | `client_error` |
//! | any other code without `SenderFault` or status | Retryable | `unknown` |
//!
//! Retryable errors are retried inside the connector (see the module docs); Permanent ones
//! fail only the event (its message names the event id and the destination); Fatal ones
//! stop the publisher.

use aws_sdk_sns::config::http::HttpResponse;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};

use crate::{ErrorClass, PublishError};

/// Classifies an AWS error code (`Failed[].Code` of a batch response, or the code of an
/// error response), with the entry's `SenderFault` and the HTTP status when known.
pub fn classify_code(
    code: &str,
    sender_fault: Option<bool>,
    status: Option<u16>,
) -> (ErrorClass, &'static str) {
    use ErrorClass::*;
    // SQS's query-protocol codes carry a prefix (`AWS.SimpleQueueService.NonExistentQueue`),
    // JSON-protocol ones a namespace (`com.amazonaws.sqs#QueueDoesNotExist`).
    let code = code.rsplit(['#', '.']).next().unwrap_or(code);
    match code {
        "Throttling"
        | "ThrottlingException"
        | "ThrottledException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "TooManyRequests"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "SlowDown"
        | "PriorRequestNotComplete"
        | "KMSThrottling"
        | "KMSThrottlingException" => (Retryable, "throttled"),
        "InternalError"
        | "InternalFailure"
        | "InternalServerError"
        | "InternalErrorException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException"
        | "KMSInternal"
        | "KMSInternalException" => (Retryable, "server_error"),
        "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "UnrecognizedClient"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "InvalidAccessKeyId"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidSecurity"
        | "AuthFailure" => (Fatal, "invalid_credentials"),
        "AuthorizationError"
        | "AuthorizationErrorException"
        | "AccessDenied"
        | "AccessDeniedException"
        | "KMSAccessDenied"
        | "KMSAccessDeniedException" => (Permanent, "not_authorized"),
        "NotFound"
        | "NotFoundException"
        | "QueueDoesNotExist"
        | "NonExistentQueue"
        | "ResourceNotFoundException"
        | "KMSNotFound"
        | "KMSNotFoundException"
        | "KMSDisabled"
        | "KMSDisabledException"
        | "QueueDeletedRecently" => (Permanent, "destination_not_found"),
        "MessageTooLong"
        | "BatchRequestTooLong"
        | "BatchEntryTooLong"
        | "RequestEntityTooLarge" => (Permanent, "message_too_large"),
        "InvalidParameter"
        | "InvalidParameterException"
        | "InvalidParameterValue"
        | "InvalidParameterValueException"
        | "InvalidParameterCombination"
        | "MissingParameter"
        | "ValidationError"
        | "ValidationException"
        | "InvalidMessageContents"
        | "InvalidAttributeName"
        | "InvalidAttributeValue"
        | "InvalidBatchEntryId"
        | "BatchEntryIdsNotDistinct"
        | "TooManyEntriesInBatchRequest"
        | "EmptyBatchRequest"
        | "UnsupportedOperation"
        | "InvalidAddress"
        | "InvalidIdFormat" => (Permanent, "invalid_parameter"),
        _ => match (sender_fault, status) {
            (_, Some(s)) if s >= 500 => (Retryable, "server_error"),
            (Some(false), _) => (Retryable, "server_error"),
            (Some(true), _) => (Permanent, "client_error"),
            (_, Some(429)) => (Retryable, "throttled"),
            (_, Some(s)) if (400..500).contains(&s) => (Permanent, "client_error"),
            // Nothing known about it: retrying may duplicate but never loses an event.
            _ => (Retryable, "unknown"),
        },
    }
}

/// Classifies a failed SNS or SQS request (every entry of the batch shares the result).
/// `what` says which request and destination, for the message.
pub fn classify_sdk_error<E>(err: &SdkError<E, HttpResponse>, what: &str) -> PublishError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use ErrorClass::*;
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let inner = service.err();
            let code = inner.code().unwrap_or("");
            let (class, kind) = classify_code(code, None, Some(status));
            let detail = inner.message().unwrap_or("");
            PublishError::new(
                class,
                kind,
                format!("{what}: {code} (HTTP {status}): {detail}"),
            )
        }
        SdkError::TimeoutError(_) => {
            PublishError::new(Retryable, "timeout", format!("{what}: request timed out"))
        }
        SdkError::DispatchFailure(failure) => {
            let text = error_chain(err);
            if failure.is_timeout() {
                PublishError::new(Retryable, "timeout", format!("{what}: {text}"))
            } else if mentions_credentials(&text) {
                PublishError::new(Fatal, "invalid_credentials", format!("{what}: {text}"))
            } else {
                PublishError::new(Retryable, "dispatch", format!("{what}: {text}"))
            }
        }
        SdkError::ResponseError(response) => {
            let status = response.raw().status().as_u16();
            let (class, kind) = if (400..500).contains(&status) && status != 429 {
                (Permanent, "client_error")
            } else {
                (Retryable, "bad_response")
            };
            PublishError::new(
                class,
                kind,
                format!(
                    "{what}: unreadable response (HTTP {status}): {}",
                    error_chain(err)
                ),
            )
        }
        // Building the request failed: with the SDK's own types this means the credentials
        // (or the region) could not be resolved; nothing will work.
        _ => {
            let text = error_chain(err);
            let kind = if mentions_credentials(&text) {
                "invalid_credentials"
            } else {
                "request_construction"
            };
            PublishError::new(Fatal, kind, format!("{what}: {text}"))
        }
    }
}

fn mentions_credentials(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("credential") || lower.contains("identity")
}

/// The error and its sources, joined (the SDK's `Display` alone says "dispatch failure").
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    #[test]
    fn classification_table() {
        type Row = (
            &'static str,
            Option<bool>,
            Option<u16>,
            ErrorClass,
            &'static str,
        );
        let table: &[Row] = &[
            ("Throttling", None, Some(400), Retryable, "throttled"),
            (
                "ThrottlingException",
                None,
                Some(400),
                Retryable,
                "throttled",
            ),
            ("RequestThrottled", Some(true), None, Retryable, "throttled"),
            (
                "AWS.SimpleQueueService.RequestThrottled",
                None,
                None,
                Retryable,
                "throttled",
            ),
            (
                "TooManyRequestsException",
                None,
                Some(429),
                Retryable,
                "throttled",
            ),
            (
                "com.amazonaws.sqs#ThrottlingException",
                None,
                Some(400),
                Retryable,
                "throttled",
            ),
            (
                "KMSThrottlingException",
                Some(false),
                None,
                Retryable,
                "throttled",
            ),
            (
                "InternalError",
                Some(false),
                None,
                Retryable,
                "server_error",
            ),
            (
                "InternalFailure",
                None,
                Some(500),
                Retryable,
                "server_error",
            ),
            (
                "ServiceUnavailable",
                None,
                Some(503),
                Retryable,
                "server_error",
            ),
            ("SomethingNew", None, Some(502), Retryable, "server_error"),
            ("SomethingNew", Some(false), None, Retryable, "server_error"),
            ("SomethingNew", None, None, Retryable, "unknown"),
            (
                "InvalidClientTokenId",
                None,
                Some(403),
                Fatal,
                "invalid_credentials",
            ),
            (
                "UnrecognizedClientException",
                None,
                Some(400),
                Fatal,
                "invalid_credentials",
            ),
            (
                "SignatureDoesNotMatch",
                None,
                Some(403),
                Fatal,
                "invalid_credentials",
            ),
            (
                "ExpiredToken",
                None,
                Some(403),
                Fatal,
                "invalid_credentials",
            ),
            (
                "AuthorizationError",
                None,
                Some(403),
                Permanent,
                "not_authorized",
            ),
            (
                "AccessDeniedException",
                None,
                Some(400),
                Permanent,
                "not_authorized",
            ),
            (
                "KMSAccessDenied",
                Some(true),
                None,
                Permanent,
                "not_authorized",
            ),
            (
                "NotFound",
                None,
                Some(404),
                Permanent,
                "destination_not_found",
            ),
            (
                "AWS.SimpleQueueService.NonExistentQueue",
                None,
                Some(400),
                Permanent,
                "destination_not_found",
            ),
            (
                "com.amazonaws.sqs#QueueDoesNotExist",
                None,
                Some(400),
                Permanent,
                "destination_not_found",
            ),
            (
                "MessageTooLong",
                None,
                Some(400),
                Permanent,
                "message_too_large",
            ),
            (
                "BatchRequestTooLong",
                None,
                Some(400),
                Permanent,
                "message_too_large",
            ),
            (
                "InvalidParameter",
                Some(true),
                None,
                Permanent,
                "invalid_parameter",
            ),
            (
                "InvalidParameterValue",
                None,
                Some(400),
                Permanent,
                "invalid_parameter",
            ),
            (
                "InvalidMessageContents",
                Some(true),
                None,
                Permanent,
                "invalid_parameter",
            ),
            (
                "ValidationError",
                None,
                Some(400),
                Permanent,
                "invalid_parameter",
            ),
            ("SomethingNew", Some(true), None, Permanent, "client_error"),
            ("SomethingNew", None, Some(400), Permanent, "client_error"),
            ("", None, Some(429), Retryable, "throttled"),
        ];
        for (code, sender_fault, status, class, kind) in table {
            assert_eq!(
                classify_code(code, *sender_fault, *status),
                (*class, *kind),
                "{code} sender_fault={sender_fault:?} status={status:?}"
            );
        }
    }
}
