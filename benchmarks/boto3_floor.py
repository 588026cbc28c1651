"""The floor of `make aws-e2e`: a minimal boto3 script invoking the three functions in order on the same endpoint.

`python -m benchmarks.boto3_floor --endpoint URL --region R --client-id ID FUNCTION...`: one Lambda client, each
function invoked with {"client_id": ID}, StatusCode 200 and no FunctionError required. Nothing else: no configuration
reads, no output checks, no records. Like the toolkit it skips the interpreter's teardown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import boto3
from botocore.config import Config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.boto3_floor", description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("functions", nargs="+")
    args = parser.parse_args(argv)
    config = Config(read_timeout=960, retries={"total_max_attempts": 1}, tcp_keepalive=True)
    client = boto3.client("lambda", endpoint_url=args.endpoint, region_name=args.region, config=config)
    event = json.dumps({"client_id": args.client_id}).encode()
    for name in args.functions:
        answer = client.invoke(FunctionName=name, Payload=event)
        payload = answer["Payload"].read()
        if answer["StatusCode"] != 200 or "FunctionError" in answer:
            print(f"{name}: {answer.get('FunctionError')} {payload!r}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)
