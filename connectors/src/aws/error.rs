//! The one place SNS / SQS errors are classified, and the S3 errors of
//! `large_payloads` (PutObject), whose codes share the table (`SlowDown`,
//! `InternalError`, `ServiceUnavailable`, `AccessDenied`… mean the same there).
//!
//! Every failure, whether of a whole request (an `SdkError`) or of one entry of a batch
//! response (`Failed[]` with a code and `SenderFault`), goes through [`classify_code`] or
//! [`classify_sdk_error`]. The last column says whether the error may be **transient**
//! ([`may_be_transient`]): conditions that usually mean "this will never work" but are
//! also what a passing change looks like — infrastructure as code deleting and re-creating
//! a topic or queue, a policy or KMS key being rotated, a proxy answering 407. Those are
//! retried like Retryable ones for `transient_error_window_ms` (default 5 minutes) before
//! they count as Permanent (see the module docs).
//!
//! | AWS code (or condition) | Class | `kind` | transient |
//! |---|---|---|---|
//! | `Throttling`, `ThrottlingException`, `ThrottledException`, `RequestThrottled`, `TooManyRequestsException`, `RequestLimitExceeded`, `SlowDown`, `KMSThrottling*`, HTTP 429 | Retryable | `throttled` | (always retried) |
//! | `InternalError`, `InternalFailure`, `InternalServerError`, `ServiceUnavailable*`, `RequestTimeout*`, `KMSInternal*`, any HTTP 5xx, unknown code with `SenderFault=false` | Retryable | `server_error` | (always retried) |
//! | timeouts (also HTTP 408), connection errors, unparseable responses | Retryable | `timeout` / `dispatch` / `bad_response` | (always retried) |
//! | `InvalidClientTokenId`, `UnrecognizedClientException`, `SignatureDoesNotMatch`, `IncompleteSignature`, `MissingAuthenticationToken`, `InvalidAccessKeyId`, `ExpiredToken*`, `InvalidSecurity`, no credentials found | Fatal | `invalid_credentials` | no |
//! | `AuthorizationError`, `AccessDenied*`, `KMSAccessDenied*`, S3 `AllAccessDisabled` (HTTP 403) | Permanent | `not_authorized` | **yes** |
//! | `NotFound*`, `QueueDoesNotExist`, `NonExistentQueue`, `ResourceNotFoundException`, `QueueDeletedRecently`, S3 `NoSuchBucket` (HTTP 404) | Permanent | `destination_not_found` | **yes** |
//! | `KMSDisabled*`, `KMSNotFound*`, `KMSInvalidState*`, `KMSOptInRequired`, `KMSInvalidKeyUsage*` | Permanent | `kms_key_unusable` | **yes** |
//! | `MessageTooLong`, `BatchRequestTooLong`, `BatchEntryTooLong`, S3 `EntityTooLarge`, detected before sending | Permanent | `message_too_large` | no |
//! | `InvalidParameter*`, `ValidationError`, `ValidationException`, `InvalidMessageContents`, `InvalidAttribute*`, `InvalidBatchEntryId`, `UnsupportedOperation`, S3 `InvalidBucketName`, `KeyTooLongError`, `InvalidArgument` | Permanent | `invalid_parameter` | no |
//! | any other code with `SenderFault=true` or HTTP 4xx (e.g. a proxy's 407) | Permanent | `client_error` | **yes** |
//! | any other code without `SenderFault` or status | Retryable | `unknown` | (always retried) |
//!
//! Retryable errors are retried inside the connector (see the module docs); Permanent ones
//! fail only the event (its message names the event id and the destination); Fatal ones
//! stop the publisher. Errors about the message itself (too large, invalid parameter) are
//! never transient: the same bytes will be refused again.

use aws_sdk_sns::config::http::HttpResponse;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};

use crate::{ErrorClass, PublishError};

/// The `kind`s of Permanent errors that may be transient (the table's last column): they
/// are retried for `transient_error_window_ms` before they count as Permanent.
pub const TRANSIENT_KINDS: &[&str] = &[
    "not_authorized",
    "destination_not_found",
    "kms_key_unusable",
    "client_error",
];

/// Whether `err` is a Permanent error that may be transient (see the table).
pub fn may_be_transient(err: &PublishError) -> bool {
    err.class == ErrorClass::Permanent && TRANSIENT_KINDS.contains(&err.kind)
}

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
        | "KMSAccessDeniedException"
        | "AllAccessDisabled" => (Permanent, "not_authorized"),
        "NotFound"
        | "NotFoundException"
        | "QueueDoesNotExist"
        | "NonExistentQueue"
        | "ResourceNotFoundException"
        | "QueueDeletedRecently"
        | "NoSuchBucket" => (Permanent, "destination_not_found"),
        "KMSDisabled"
        | "KMSDisabledException"
        | "KMSNotFound"
        | "KMSNotFoundException"
        | "KMSInvalidState"
        | "KMSInvalidStateException"
        | "KMSOptInRequired"
        | "KMSInvalidKeyUsage"
        | "KMSInvalidKeyUsageException" => (Permanent, "kms_key_unusable"),
        "MessageTooLong"
        | "BatchRequestTooLong"
        | "BatchEntryTooLong"
        | "RequestEntityTooLarge"
        | "EntityTooLarge" => (Permanent, "message_too_large"),
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
        | "InvalidIdFormat"
        | "InvalidBucketName"
        | "KeyTooLongError"
        | "InvalidArgument" => (Permanent, "invalid_parameter"),
        _ => match (sender_fault, status) {
            (_, Some(s)) if s >= 500 => (Retryable, "server_error"),
            (Some(false), _) => (Retryable, "server_error"),
            (Some(true), _) => (Permanent, "client_error"),
            (_, Some(429)) => (Retryable, "throttled"),
            (_, Some(408)) => (Retryable, "timeout"),
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
            let (class, kind) = match status {
                429 => (Retryable, "throttled"),
                408 => (Retryable, "timeout"),
                400..=499 => (Permanent, "client_error"),
                _ => (Retryable, "bad_response"),
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
            ("", None, Some(408), Retryable, "timeout"),
            ("", None, Some(407), Permanent, "client_error"),
            ("", None, Some(404), Permanent, "client_error"),
            (
                "KMSDisabledException",
                Some(true),
                None,
                Permanent,
                "kms_key_unusable",
            ),
            (
                "KMSInvalidStateException",
                None,
                Some(400),
                Permanent,
                "kms_key_unusable",
            ),
            (
                "KMSNotFound",
                Some(true),
                None,
                Permanent,
                "kms_key_unusable",
            ),
            (
                "KMSOptInRequired",
                Some(true),
                None,
                Permanent,
                "kms_key_unusable",
            ),
            (
                "QueueDeletedRecently",
                None,
                Some(400),
                Permanent,
                "destination_not_found",
            ),
        ];
        for (code, sender_fault, status, class, kind) in table {
            assert_eq!(
                classify_code(code, *sender_fault, *status),
                (*class, *kind),
                "{code} sender_fault={sender_fault:?} status={status:?}"
            );
        }
    }

    #[test]
    fn transient_marker() {
        // (code, sender_fault, status, may be transient)
        let table: &[(&str, Option<bool>, Option<u16>, bool)] = &[
            // 403 / 404 / KMS / unknown 4xx: retried for the window.
            ("AuthorizationError", None, Some(403), true),
            ("AccessDeniedException", None, Some(400), true),
            ("KMSAccessDeniedException", Some(true), None, true),
            ("NotFound", None, Some(404), true),
            (
                "AWS.SimpleQueueService.NonExistentQueue",
                None,
                Some(400),
                true,
            ),
            ("com.amazonaws.sqs#QueueDoesNotExist", None, Some(400), true),
            ("KMSDisabled", Some(true), None, true),
            ("KMSInvalidStateException", Some(true), None, true),
            ("SomethingNew", Some(true), None, true),
            ("", None, Some(407), true),
            // About the message itself: refused again, whenever.
            ("MessageTooLong", None, Some(400), false),
            ("InvalidParameterValue", None, Some(400), false),
            ("InvalidMessageContents", Some(true), None, false),
            ("ValidationError", None, Some(400), false),
            // Not Permanent at all.
            ("ThrottlingException", None, Some(400), false),
            ("InternalError", Some(false), None, false),
            ("", None, Some(408), false),
            ("InvalidClientTokenId", None, Some(403), false),
        ];
        for (code, sender_fault, status, transient) in table {
            let (class, kind) = classify_code(code, *sender_fault, *status);
            let err = PublishError::new(class, kind, "x");
            assert_eq!(
                may_be_transient(&err),
                *transient,
                "{code} sender_fault={sender_fault:?} status={status:?} -> {class:?} {kind}"
            );
        }
    }
}
