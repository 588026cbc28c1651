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


def latest_key(bucket: str, prefix: str, name: str) -> str | None:
    """The newest key under prefix ending in /name (dated keys sort by date)."""
    keys = []
    for page in s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith("/" + name)]
    return max(keys) if keys else None


def answer(body: dict[str, Any], status_code: int = 200) -> dict[str, Any]:
    return {"statusCode": status_code, "body": body}
