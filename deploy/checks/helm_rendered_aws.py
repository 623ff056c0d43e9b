#!/usr/bin/env python3
"""Assertions over the SNS/SQS renderings: the sink section of relay.yaml (every key for
sqs-fifo, the relay defaults for sns), no Kafka variables, the AWS egress rule.

Usage: helm_rendered_aws.py WORK_DIR
"""

import sys

import yaml

work = sys.argv[1]


def load(name):
    return [d for d in yaml.safe_load_all(open(f"{work}/{name}.yaml")) if d]


def relay_config(docs):
    cm = [d for d in docs if d["kind"] == "ConfigMap" and "relay.yaml" in d.get("data", {})]
    return yaml.safe_load(cm[0]["data"]["relay.yaml"])


def relay_env(docs):
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    c = next(c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == "outbox-relay")
    return {e["name"]: e for e in c.get("env", [])}


defaults = {
    "fifo": False,
    "max_concurrency": 16,
    "raw_payload": True,
    "max_message_bytes": 262144,
    "retry_initial_backoff_ms": 100,
    "retry_max_backoff_ms": 20000,
    "max_retry_elapsed_ms": 0,
    "request_timeout_ms": 30000,
    "connect_timeout_ms": 5000,
}

sqs = load("sqs-fifo")
cfg = relay_config(sqs)
want = {
    "kind": "sqs",
    "sqs": {
        "region": "eu-west-1",
        "endpoint": "http://sqs-emulator.aws.svc:9324",
        "fifo": True,
        "max_concurrency": 32,
        "raw_payload": False,
        "max_message_bytes": 262144,
        "retry_initial_backoff_ms": 200,
        "retry_max_backoff_ms": 10000,
        "max_retry_elapsed_ms": 600000,
        "request_timeout_ms": 20000,
        "connect_timeout_ms": 3000,
    },
}
assert cfg["sink"] == want, cfg["sink"]
assert (
    cfg["outbox"]["route"]["template"]
    == "https://sqs.eu-west-1.amazonaws.com/123456789012/{aggregatetype}-events.fifo"
)
assert cfg["outbox"]["dead_letter_destination"].endswith("/123456789012/outbox-dead-letter.fifo")
env = relay_env(sqs)
assert "RELAY__SINK__KAFKA__PROPERTIES__SASL_PASSWORD" not in env, (
    "Kafka SASL variable rendered for the SQS sink"
)
assert not any(k.startswith("AWS_") for k in env), sorted(env)
np = next(d for d in sqs if d["kind"] == "NetworkPolicy")["spec"]["egress"]
aws_rule = np[-1]
assert "to" not in aws_rule and [p["port"] for p in aws_rule["ports"]] == [443, 9324], aws_rule
sa = next(d for d in sqs if d["kind"] == "ServiceAccount")
assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")

sns = load("sns")
cfg = relay_config(sns)
assert cfg["sink"] == {"kind": "sns", "sns": defaults}, cfg["sink"]
assert cfg["outbox"]["route"]["template"].startswith("arn:aws:sns:eu-west-1:123456789012:")
env = relay_env(sns)
assert env["AWS_REGION"]["value"] == "eu-west-1", env
assert "RELAY__SINK__KAFKA__PROPERTIES__SASL_PASSWORD" not in env

for name in ("standalone", "sidecar", "all"):
    sink = relay_config(load(name))["sink"]
    assert sink["kind"] == "kafka" and set(sink) == {"kind", "kafka"}, sink
np = next(d for d in load("all") if d["kind"] == "NetworkPolicy")["spec"]["egress"]
assert len(np) == 2, "Kafka sink: no AWS egress rule expected"
print(
    "sink sections: sqs (every key), sns (relay defaults), kafka (standalone, sidecar, all); AWS egress rule"
)
