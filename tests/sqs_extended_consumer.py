"""A consumer built on the Amazon SQS Extended Client Library for Python, as an application
would write it: it receives from a queue and gets the original bodies, S3 pointers
resolved by the library. Used by tests/tests/sqs_large_payloads.rs.

Usage: python sqs_extended_consumer.py QUEUE_URL COUNT IDLE_SECONDS
Environment: AWS_ENDPOINT_URL (the emulator, for SQS and S3), AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION.

Prints one JSON line per message received (and deletes it):
{"id": <id attribute>, "aggregateid": ..., "sha256": <hex of the body's UTF-8 bytes>,
 "len": <bytes>, "pointer": <whether the library resolved an S3 pointer>}
until COUNT messages were received or IDLE_SECONDS passed without any.
"""

import hashlib
import json
import os
import sys
import time

from sqs_extended_client import SQSExtendedClientSession


def main():
    queue_url, count, idle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    session = SQSExtendedClientSession(region_name=os.environ.get("AWS_REGION", "us-east-1"))
    sqs = session.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    received = 0
    last = time.monotonic()
    while received < count and time.monotonic() - last < idle:
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=600,
            WaitTimeSeconds=1,
        )
        messages = response.get("Messages", [])
        if not messages:
            continue
        last = time.monotonic()
        for m in messages:
            attributes = m.get("MessageAttributes", {})
            body = m["Body"].encode("utf-8")
            print(
                json.dumps(
                    {
                        "id": attributes.get("id", {}).get("StringValue"),
                        "aggregateid": attributes.get("aggregateid", {}).get("StringValue"),
                        "sha256": hashlib.sha256(body).hexdigest(),
                        "len": len(body),
                        # The library embeds the pointer in the receipt handle it returns.
                        "pointer": "-..s3Key..-" in m["ReceiptHandle"],
                    }
                ),
                flush=True,
            )
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            received += 1


if __name__ == "__main__":
    main()
