"""Runs published to an env's data bucket, so the team shares its history: publish one, read them back."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tasks.aws.clients import aws_errors
from tasks.contexts.runs import RunFolder
from tasks.pipeline.records import RunRecord
from tasks.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PUBLISHED_PREFIX = "e2e-runs"
PUBLISHED_FILES = ("run.json", "report.md")


def publish(s3: S3Client, settings: Settings, record: RunRecord, folder: RunFolder) -> str:
    """Copy run.json and report.md to the env's data bucket; return the S3 prefix."""
    bucket = settings.data_bucket(record.env)
    prefix = f"{PUBLISHED_PREFIX}/{record.client_id}/{record.run_id}/"
    with aws_errors("s3:PutObject", f"s3://{bucket}/{prefix}"):
        for name in PUBLISHED_FILES:
            s3.put_object(Bucket=bucket, Key=prefix + name, Body=(folder.path / name).read_bytes())
    return f"s3://{bucket}/{prefix}"


def published_runs(s3: S3Client, settings: Settings, client_id: str | None = None) -> list[RunRecord]:
    """Runs published to the env's data bucket (all clients, or one)."""
    bucket = settings.data_bucket()
    prefix = f"{PUBLISHED_PREFIX}/{client_id}/" if client_id else f"{PUBLISHED_PREFIX}/"
    records = []
    with aws_errors("s3:ListBucket", f"s3://{bucket}/{prefix}"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if item["Key"].endswith("/run.json"):
                    records.append(_published(s3, bucket, item["Key"]))
    return [r for r in records if r is not None]


def _published(s3: S3Client, bucket: str, key: str) -> RunRecord | None:
    try:
        document: Any = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        return RunRecord.from_json(document)
    except (ClientError, ValueError, TypeError):
        return None
