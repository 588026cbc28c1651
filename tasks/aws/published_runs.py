"""Runs published to an env's data bucket, so the team shares its history: publish one, read them back.

What is read back is untrusted: a run.json over MAX_PUBLISHED_RUN_BYTES, not JSON, or not a run record the toolkit
can summarize (wrong types, a client_id that is not one) is skipped, and named.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tasks.aws.clients import aws_errors, error_code, read_limited
from tasks.contexts.records import RunSummary
from tasks.contexts.runs import RunFolder, summarize
from tasks.contexts.store import client_id_order
from tasks.errors import TooLarge, brief
from tasks.json_documents import parse_json
from tasks.pipeline.records import RunRecord, run_problem
from tasks.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PUBLISHED_PREFIX = "e2e-runs"
PUBLISHED_FILES = ("run.json", "report.md")
LIMIT_SETTING = "MAX_PUBLISHED_RUN_BYTES"


@dataclass(frozen=True)
class Published:
    """The runs read back, and the run.json files skipped with why (S3 URI, reason)."""

    records: list[RunRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def warning(self) -> str | None:
        """One line for every run skipped, naming the first; None when none was."""
        if not self.skipped:
            return None
        uri, why = self.skipped[0]
        return f"warning: skipped {len(self.skipped)} published run(s) that could not be used, e.g. {uri}: {why}"


class NotARun(ValueError):
    """A published run.json the toolkit cannot use (the message says why)."""


def publish(s3: S3Client, settings: Settings, record: RunRecord, folder: RunFolder) -> str:
    """Copy run.json and report.md to the env's data bucket; return the S3 prefix."""
    bucket = settings.data_bucket(record.env)
    prefix = f"{PUBLISHED_PREFIX}/{record.client_id}/{record.run_id}/"
    with aws_errors("s3:PutObject", f"s3://{bucket}/{prefix}"):
        for name in PUBLISHED_FILES:
            s3.put_object(Bucket=bucket, Key=prefix + name, Body=(folder.path / name).read_bytes())
    return f"s3://{bucket}/{prefix}"


def published_runs(s3: S3Client, settings: Settings, client_id: str | None = None) -> Published:
    """Runs published to the env's data bucket (all clients, or one); those that cannot be used are skipped."""
    bucket = settings.data_bucket()
    prefix = f"{PUBLISHED_PREFIX}/{client_id}/" if client_id else f"{PUBLISHED_PREFIX}/"
    found = Published()
    with aws_errors("s3:ListBucket", f"s3://{bucket}/{prefix}"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/run.json"):
                    continue
                uri = f"s3://{bucket}/{brief(item['Key'], 120)[1:-1]}"
                try:
                    found.records.append(_published(s3, bucket, item, settings.max_published_run_bytes))
                except (NotARun, TooLarge) as err:
                    found.skipped.append((uri, str(err)))
    return found


def _published(s3: S3Client, bucket: str, item: Any, limit: int) -> RunRecord:
    key = item["Key"]
    if item.get("Size", 0) > limit:
        raise NotARun(f"{item['Size']} bytes, over {LIMIT_SETTING}={limit}")
    try:
        data = read_limited(s3.get_object(Bucket=bucket, Key=key), key, limit, LIMIT_SETTING)
    except ClientError as err:
        raise NotARun(f"not readable ({error_code(err)})") from err
    try:
        document = parse_json(data.decode("utf-8"))
    except ValueError as err:
        raise NotARun("not JSON") from err
    problem = run_problem(document) or (
        None if client_id_order(document["client_id"]) else f"client_id {brief(document['client_id'])} is not one"
    )
    if problem:
        raise NotARun(problem)
    try:
        record = RunRecord.from_json(document)
        RunSummary.from_json(asdict(summarize(record)))  # every figure a summary shows has its type
    except (TypeError, ValueError, AttributeError, KeyError) as err:
        raise NotARun(f"not a run record ({type(err).__name__})") from err
    return record
