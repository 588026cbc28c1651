"""Helpers the sample Lambdas share (deployed as a layer): S3 access, config loading, dated keys."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import boto3
import yaml

_s3 = None


def s3():
    """One S3 client per process, configured by the Lambda environment (AWS_ENDPOINT_URL locally)."""
    global _s3
    if _s3 is None:
        _s3 = boto3.client("s3")
    return _s3


def now() -> datetime:
    return datetime.now(UTC)


def dated_prefix(when: datetime) -> str:
    return when.strftime("%Y/%m/%d")


def read_yaml(bucket: str, key: str) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: same result, much faster
    return yaml.load(s3().get_object(Bucket=bucket, Key=key)["Body"].read(), Loader=loader)


def read_json(bucket: str, key: str) -> Any:
    return json.loads(s3().get_object(Bucket=bucket, Key=key)["Body"].read())


def write_object(bucket: str, key: str, body: str, content_type: str) -> str:
    s3().put_object(Bucket=bucket, Key=key, Body=body.encode("utf-8"), ContentType=content_type)
    return f"s3://{bucket}/{key}"


def write_json(bucket: str, key: str, document: Any) -> str:
    return write_object(bucket, key, json.dumps(document, indent=2, ensure_ascii=False), "application/json")


def client_config(client_id: str) -> dict[str, Any]:
    """The client's config from the config bucket."""
    return read_yaml(os.environ["CONFIG_BUCKET"], f"clients/{client_id}.yaml")


def newest_non_empty(bucket: str, prefix: str, name: str) -> tuple[str, list] | None:
    """The newest key under prefix ending in /name whose JSON list is not empty, and that list (as the real one)."""
    keys = []
    for page in s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith("/" + name)]
    for key in sorted(keys, reverse=True):  # dated keys sort by date
        items = read_json(bucket, key)
        if items:
            return key, items
    return None


def simulated(event: dict[str, Any], fault: str) -> bool:
    """Whether the event asks the sample pipeline to fail this way (event field `simulate`, see README)."""
    return event.get("simulate") == fault


def answer(body: dict[str, Any], status_code: int = 200) -> dict[str, Any]:
    return {"statusCode": status_code, "body": body}


def run_step(event: dict[str, Any], step: Any) -> dict[str, Any]:
    """What the real handlers do around their work: 400 without a client_id, 500 with the error's name and message."""
    if not event.get("client_id"):
        return answer({"status": "error", "error": "client_id is required"}, 400)
    try:
        return step(event)
    except Exception as err:  # noqa: BLE001 - the real handlers answer 500 with the error's name and message
        return error_answer(err)


def error_answer(err: Exception) -> dict[str, Any]:
    """The real handlers' answer to an exception: statusCode 500, the exception's name and message."""
    print(f"[ERROR] {type(err).__name__}: {err}")
    return answer({"error": type(err).__name__, "message": str(err)}, 500)
