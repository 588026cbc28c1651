"""Put a client config in an env's config bucket safely: plan (diff, idempotence, ownership), put, roll back.

A put never overwrites what it did not diff against (a conditional put) and what it replaces is always kept first
(`intent`): the previous VersionId when the bucket is versioned, else a backup file in the context folder. What is
read from the bucket is untrusted: at most MAX_CONFIG_BYTES of it is read.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tasks.aws.clients import aws_errors, error_code, is_missing, read_limited
from tasks.contexts.client_config import sha256
from tasks.contexts.files import write_atomic
from tasks.contexts.records import Upload
from tasks.contexts.store import MAX_CLIENT_ID, client_id_order
from tasks.errors import Conflict, UsageError, brief

LIMIT_SETTING = "MAX_CONFIG_BYTES"

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

WRITER_METADATA = "vectora-e2e-client-id"


@dataclass(frozen=True)
class RemoteObject:
    """What the key holds now (exists False when there is nothing)."""

    exists: bool
    body: bytes = b""
    etag: str | None = None
    version_id: str | None = None
    last_modified: datetime | None = None

    @property
    def sha256(self) -> str | None:
        return sha256(self.body) if self.exists else None


@dataclass(frozen=True)
class UploadPlan:
    """What an upload would do, worked out with reads only."""

    bucket: str
    key: str
    local: bytes
    remote: RemoteObject
    versioned: bool
    owned: bool

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def local_sha256(self) -> str:
        return sha256(self.local)

    @property
    def action(self) -> str:
        if not self.remote.exists:
            return "create"
        return "unchanged" if self.remote.sha256 == self.local_sha256 else "update"

    def diff(self) -> str:
        """A unified diff from what is there to what would be uploaded ('' when identical)."""
        before = self.remote.body.decode("utf-8", "replace").splitlines(keepends=True)
        after = self.local.decode("utf-8", "replace").splitlines(keepends=True)
        label = self.uri if self.remote.exists else "/dev/null"
        return "".join(difflib.unified_diff(before, after, fromfile=label, tofile=self.uri))


def read_remote(s3: S3Client, bucket: str, key: str, limit: int) -> RemoteObject:
    """The object at bucket/key (at most limit bytes, else TooLarge), or RemoteObject(False) when the key is absent.

    A missing bucket is an error.
    """
    uri = f"s3://{bucket}/{key}"
    with aws_errors("s3:GetObject", uri):
        try:
            answer = s3.get_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if is_missing(err):
                return RemoteObject(False)
            raise
        body = read_limited(answer, uri, limit, LIMIT_SETTING)
        return RemoteObject(True, body, answer["ETag"], answer.get("VersionId"), answer.get("LastModified"))


def plan_upload(s3: S3Client, bucket: str, key: str, local: bytes, written: set[str], limit: int) -> UploadPlan:
    """Plan putting local at bucket/key; written holds the SHA-256 of every config this context wrote there."""
    remote = read_remote(s3, bucket, key, limit)
    with aws_errors("s3:GetBucketVersioning", f"s3://{bucket}"):
        versioned = s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"
    owned = not remote.exists or remote.sha256 in written
    return UploadPlan(bucket, key, local, remote, versioned, owned)


def check_owned(plan: UploadPlan) -> None:
    """Refuse (exit 2) a plan that would overwrite a config this context did not write; a dry run refuses alike."""
    if plan.action != "unchanged" and not plan.owned:
        raise UsageError(
            f"{plan.uri} holds a config this context did not write (sha256 {(plan.remote.sha256 or '')[:12]}...): "
            "refusing to overwrite it; create a new context instead"
        )


def intent(plan: UploadPlan, backups: Path, now: datetime) -> dict[str, Any]:
    """The record of the upload plan is about to make, written down before the put: what it will replace (the
    version and ETag diffed against, and a backup file when the bucket keeps no versions) is kept here, first."""
    check_owned(plan)
    record: dict[str, Any] = {
        "at": now.isoformat(),
        "uri": plan.uri,
        "sha256": plan.local_sha256,
        "action": plan.action,
        "version_id": plan.remote.version_id if plan.action == "unchanged" else None,
        "replaced": None,
    }
    if plan.action != "unchanged" and plan.remote.exists:
        replaced: dict[str, Any] = {
            "sha256": plan.remote.sha256,
            "version_id": None,
            "backup": None,
            "etag": plan.remote.etag,
        }
        if plan.versioned and plan.remote.version_id:
            replaced["version_id"] = plan.remote.version_id
        else:
            backups.mkdir(parents=True, exist_ok=True)
            backup = backups / f"{now:%Y%m%dT%H%M%SZ}-{plan.key.rsplit('/', 1)[-1]}"
            write_atomic(backup, plan.remote.body)
            replaced["backup"] = str(backup)
        record["replaced"] = replaced
    return record


def put(s3: S3Client, plan: UploadPlan, client_id: str) -> str | None:
    """Carry out plan's put, conditional on the key being what was diffed against; return the new S3 version."""
    condition: dict[str, Any] = {"IfMatch": plan.remote.etag} if plan.remote.exists else {"IfNoneMatch": "*"}
    return _conditional_put(s3, plan.bucket, plan.key, plan.local, client_id, condition).get("VersionId")


def _conditional_put(
    s3: S3Client, bucket: str, key: str, body: bytes, client_id: str, condition: dict[str, Any]
) -> dict[str, Any]:
    uri = f"s3://{bucket}/{key}"
    with aws_errors("s3:PutObject", uri):
        try:
            return dict(
                s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/x-yaml",
                    Metadata={WRITER_METADATA: client_id},
                    **condition,
                )
            )
        except ClientError as err:
            if error_code(err) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise Conflict(
                    f"{uri} changed while we were writing it (a concurrent change): nothing was overwritten; "
                    "run again to see the new diff"
                ) from err
            raise


def rollback(s3: S3Client, upload: Upload, client_id: str, limit: int) -> tuple[str | None, str | None]:
    """Put back what upload replaced (or delete the key when it replaced nothing), if the key still holds upload.

    Returns the SHA-256 of what was restored (None: the key was deleted) and the new S3 version, if any.
    """
    bucket, _, key = upload.uri.removeprefix("s3://").partition("/")
    current = read_remote(s3, bucket, key, limit)
    if current.sha256 != upload.sha256:
        raise Conflict(
            f"{upload.uri} no longer holds the config that was uploaded (sha256 {upload.sha256[:12]}...): "
            "someone changed it since; nothing rolled back"
        )
    replaced = upload.replaced
    if replaced is None:
        with aws_errors("s3:DeleteObject", upload.uri):
            s3.delete_object(Bucket=bucket, Key=key)
        return None, None
    if replaced.get("version_id"):
        with aws_errors("s3:GetObjectVersion", upload.uri):
            version = s3.get_object(Bucket=bucket, Key=key, VersionId=replaced["version_id"])
            body = read_limited(version, upload.uri, limit, LIMIT_SETTING)
    else:
        body = Path(replaced["backup"]).read_bytes()
    answer = _conditional_put(s3, bucket, key, body, client_id, {"IfMatch": current.etag or "*"})
    return sha256(body), answer.get("VersionId")


@dataclass(frozen=True)
class UsedVersions:
    """The versions of a template found under the config key prefix, and the keys there that are not client_ids."""

    versions: list[int]
    ignored: list[str]


def used_versions(s3: S3Client, bucket: str, key_template: str, template: str) -> UsedVersions:
    """Versions of template ever stored under the config key prefix, deleted ones included (all object versions).

    A key that would not make a valid client_id (too long, a version of hundreds of digits) is ignored, and named.
    """
    prefix, _, suffix = key_template.partition("{client_id}")
    pattern = re.compile(rf"^{re.escape(prefix)}({re.escape(template)}_v[1-9][0-9]*){re.escape(suffix)}$")
    found, ignored = set(), set()
    with aws_errors("s3:ListBucketVersions", f"s3://{bucket}/{prefix}"):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=f"{prefix}{template}_v"):
            for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                match = pattern.match(entry["Key"])
                order = client_id_order(match[1]) if match else None
                if order is not None:
                    found.add(order[1])
                elif match:
                    ignored.add(entry["Key"])
    return UsedVersions(sorted(found), sorted(ignored))


def ignored_keys_warning(bucket: str, ignored: list[str]) -> str:
    """One warning line for the keys allocation ignored (their names cut short)."""
    return (
        f"warning: ignored {len(ignored)} key(s) under s3://{bucket}/ that are not valid client_ids "
        f"(at most {MAX_CLIENT_ID} characters), e.g. {brief(ignored[0], 60)}"
    )
