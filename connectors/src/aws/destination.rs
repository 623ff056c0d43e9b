//! Destination checks: SNS topic ARNs and SQS queue URLs, and their FIFO-ness.

fn valid_name(name: &str, max: usize) -> bool {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    !base.is_empty()
        && name.len() <= max
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_fifo(
    kind: &str,
    destination: &str,
    name: &str,
    fifo: bool,
    key: &str,
) -> Result<(), String> {
    match (fifo, name.ends_with(".fifo")) {
        (true, false) => Err(format!(
            "{destination:?} is a standard {kind} but {key}.fifo is true: FIFO {kind} names end in \".fifo\""
        )),
        (false, true) => Err(format!(
            "{destination:?} is a FIFO {kind} but {key}.fifo is false: set {key}.fifo: true to publish to FIFO {kind}s"
        )),
        _ => Ok(()),
    }
}

/// `arn:<partition>:sns:<region>:<12-digit account>:<topic>`, the topic 1 to 256 of
/// `A-Za-z0-9_-` (plus `.fifo` for FIFO topics).
pub(crate) fn validate_topic_arn(destination: &str, fifo: bool) -> Result<(), String> {
    let shape =
        "SNS destinations are topic ARNs like \"arn:aws:sns:us-east-1:123456789012:orders\"";
    let parts: Vec<&str> = destination.split(':').collect();
    let [arn, partition, service, region, account, name] = parts.as_slice() else {
        return Err(format!("{destination:?} is not a topic ARN: {shape}"));
    };
    if *arn != "arn" || !partition.starts_with("aws") || *service != "sns" {
        return Err(format!("{destination:?} is not an SNS topic ARN: {shape}"));
    }
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "{destination:?}: region {region:?} is not valid: {shape}"
        ));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{destination:?}: account {account:?} is not a 12-digit account id: {shape}"
        ));
    }
    if !valid_name(name, 256) {
        return Err(format!(
            "{destination:?}: topic name {name:?} must be 1 to 256 ASCII letters, digits, '_' or '-' (and \".fifo\" for FIFO topics)"
        ));
    }
    check_fifo("topic", destination, name, fifo, "sink.sns")
}

/// `http(s)://<host>/<12-digit account>/<queue>`, the queue 1 to 80 of `A-Za-z0-9_-`
/// including `.fifo` for FIFO queues. Any host is accepted (regional endpoints, VPC
/// endpoints, emulators).
pub(crate) fn validate_queue_url(destination: &str, fifo: bool) -> Result<(), String> {
    let shape =
        "SQS destinations are queue URLs like \"https://sqs.us-east-1.amazonaws.com/123456789012/orders\"";
    let rest = destination
        .strip_prefix("https://")
        .or_else(|| destination.strip_prefix("http://"))
        .ok_or_else(|| format!("{destination:?} is not an http(s) queue URL: {shape}"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [host, account, name] = parts.as_slice() else {
        return Err(format!(
            "{destination:?} is not a queue URL (host/account/queue): {shape}"
        ));
    };
    if host.is_empty() {
        return Err(format!("{destination:?} has no host: {shape}"));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{destination:?}: account {account:?} is not a 12-digit account id: {shape}"
        ));
    }
    if !valid_name(name, 80) {
        return Err(format!(
            "{destination:?}: queue name {name:?} must be 1 to 80 ASCII letters, digits, '_' or '-' (including \".fifo\" for FIFO queues)"
        ));
    }
    check_fifo("queue", destination, name, fifo, "sink.sqs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_arns() {
        assert!(validate_topic_arn("arn:aws:sns:us-east-1:123456789012:orders", false).is_ok());
        assert!(validate_topic_arn("arn:aws:sns:us-east-1:123456789012:orders.fifo", true).is_ok());
        let err =
            validate_topic_arn("arn:aws:sns:us-east-1:123456789012:orders", true).unwrap_err();
        assert!(
            err.contains("standard topic") && err.contains("sink.sns.fifo"),
            "{err}"
        );
        let err = validate_topic_arn("arn:aws:sns:us-east-1:123456789012:orders.fifo", false)
            .unwrap_err();
        assert!(err.contains("FIFO topic"), "{err}");
        for bad in [
            "orders",
            "outbox.event.Order",
            "arn:aws:sqs:us-east-1:123456789012:orders",
            "arn:aws:sns:us-east-1:1234:orders",
            "arn:aws:sns:us-east-1:123456789012:or ders",
            "arn:aws:sns:us-east-1:123456789012:",
            "https://sqs.us-east-1.amazonaws.com/123456789012/orders",
        ] {
            assert!(validate_topic_arn(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn queue_urls() {
        assert!(validate_queue_url(
            "https://sqs.us-east-1.amazonaws.com/123456789012/orders",
            false
        )
        .is_ok());
        assert!(
            validate_queue_url("http://127.0.0.1:19324/123456789012/orders.fifo", true).is_ok()
        );
        let err =
            validate_queue_url("http://127.0.0.1:19324/123456789012/orders", true).unwrap_err();
        assert!(err.contains("standard queue"), "{err}");
        for bad in [
            "orders",
            "sqs.us-east-1.amazonaws.com/123456789012/orders",
            "https://sqs.us-east-1.amazonaws.com/orders",
            "https://sqs.us-east-1.amazonaws.com/123456789012/orders/x",
            "https://sqs.us-east-1.amazonaws.com/123456789012/",
            "arn:aws:sns:us-east-1:123456789012:orders",
        ] {
            assert!(validate_queue_url(bad, false).is_err(), "{bad}");
        }
        let long = format!("https://h/123456789012/{}", "q".repeat(81));
        assert!(validate_queue_url(&long, false).is_err());
    }
}
