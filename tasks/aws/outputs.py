"""Check the outputs each step must leave in S3: present, not empty, and written by this run."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from tasks.aws.clients import aws_errors, describe_error, is_missing
from tasks.contexts.files import write_atomic
from tasks.pipeline.checks import NEWSLETTER_FILES
from tasks.pipeline.records import OutputCheck, StepResult
from tasks.pipeline.runner import Verifier
from tasks.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _dates(started: datetime, finished: datetime) -> list[str]:
    days = [started.astimezone(UTC).date()]
    if finished.astimezone(UTC).date() != days[0]:
        days.append(days[0] + timedelta(days=1))
    return [day.strftime("%Y/%m/%d") for day in days]


def expected_outputs(
    settings: Settings, env: str, client_id: str, result: StepResult, started: datetime, finished: datetime
) -> list[list[str]]:
    """For each output the step must write, the S3 URIs that may hold it (the answer's own, else by date)."""
    body: dict[str, Any] = result.body or {}
    data, newsletters = settings.data_bucket(env), settings.newsletters_bucket(env)
    dates = _dates(started, finished)
    if result.step == "ingest":
        named = body.get("s3_output_path")
        return [[named] if named else [f"s3://{data}/ingested/{client_id}/{d}/items.json" for d in dates]]
    if result.step == "normalize-score":
        named = body.get("output_path")
        return [
            [f"s3://{data}/{named.lstrip('/')}"]
            if named
            else [f"s3://{data}/curated/{client_id}/{d}/items.json" for d in dates]
        ]
    paths = body.get("s3_paths") or {}
    return [
        [paths[kind]] if paths.get(kind) else [f"s3://{newsletters}/{client_id}/{d}/{name}" for d in dates]
        for kind, name in NEWSLETTER_FILES.items()
    ]


def verifier(
    reader: OutputReader, settings: Settings, env: str, client_id: str, clock: Callable[[], datetime]
) -> Verifier:
    """The runner's output check for env: each output of a step, written since the step started."""

    def check(result: StepResult, started: datetime) -> list[OutputCheck]:
        wanted = expected_outputs(settings, env, client_id, result, started, clock())
        return [reader.check(result.step, uris, started) for uris in wanted]

    return check


class OutputReader:
    """Checks the outputs a step must leave in S3 and keeps each one's bytes, for the data checks and to save later.

    One GetObject per output (they are small): it says whether the output exists, how big and how fresh it is, and
    holds what the data checks then read.
    """

    def __init__(self, s3: S3Client) -> None:
        self.s3 = s3
        self.fetched: dict[str, bytes] = {}

    def check(self, step: str, candidates: list[str], not_before: datetime) -> OutputCheck:
        """The first candidate that exists; ok when it is not empty and not older than not_before (whole seconds)."""
        floor = not_before.astimezone(UTC).replace(microsecond=0)
        for uri in candidates:
            bucket, key = split_uri(uri)
            try:
                found = self.s3.get_object(Bucket=bucket, Key=key)
                body = found["Body"].read()
            except ClientError as err:
                if is_missing(err):
                    continue
                return OutputCheck(step, uri, None, False, error=str(describe_error(err, "s3:GetObject", uri)))
            except BotoCoreError as err:
                return OutputCheck(step, uri, None, False, error=str(describe_error(err, "s3:GetObject", uri)))
            modified = found["LastModified"]
            if not body:
                return OutputCheck(step, uri, 0, False, modified.isoformat(), f"{uri} is empty")
            if modified < floor:
                return OutputCheck(
                    step,
                    uri,
                    len(body),
                    False,
                    modified.isoformat(),
                    f"{uri} was written at {modified.isoformat()}, before this step started",
                )
            self.fetched[uri] = body
            return OutputCheck(step, uri, len(body), True, modified.isoformat())
        return OutputCheck(step, candidates[0], None, False, error=f"{' or '.join(candidates)} not found")

    def __call__(self, uri: str) -> bytes:
        """An output's bytes: those its check read, else read now."""
        if uri not in self.fetched:
            bucket, key = split_uri(uri)
            with aws_errors("s3:GetObject", uri):
                self.fetched[uri] = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return self.fetched[uri]

    def save(self, checks: Iterable[OutputCheck], folder: Path) -> list[Path]:
        """Write each verified output into folder/<step>/<file name>; return the paths written.

        If one cannot be written (a full disk), none is kept: no half set of outputs, and their room goes to the
        run's record."""
        written = []
        try:
            for check in checks:
                if not check.ok:
                    continue
                target = folder / check.step / check.uri.rsplit("/", 1)[-1]
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(target, self(check.uri))
                written.append(target)
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return written
