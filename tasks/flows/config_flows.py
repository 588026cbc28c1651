"""Context-level config flows on a target (an env on an endpoint): upload-config, promote, rollback, pull.

Each is recorded in context.json under the target it touched, so an emulated env (`make local-aws`) never counts as
the real one. Planning (a dry run) and carrying out are separate: `plan_upload` only reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tasks.aws import client_configs
from tasks.contexts import client_config
from tasks.contexts.records import Pull, Rollback, Upload
from tasks.contexts.store import Context, ContextStore, split_client_id
from tasks.errors import UsageError
from tasks.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class UploadOutcome:
    """A plan, and what carrying it out did (None for a dry run)."""

    plan: client_configs.UploadPlan
    upload: Upload | None
    endpoint: str | None  # where it was written: None is the real AWS env


def check_local_pass(context: Context) -> None:
    """Refuse unless the last passed local run tested exactly the config's bytes as they are now."""
    passed = context.last_local_pass
    if passed is None:
        raise UsageError(
            f"{context.client_id} has no passed local run: run `make local-e2e CLIENT_ID={context.client_id}` "
            "first, or force with FORCE=1 (--force)"
        )
    now = client_configs.sha256(context.config_path.read_bytes())
    if passed.config_sha256 != now:
        raise UsageError(
            f"{context.client_id}'s config changed since its last passed local run {passed.run_id} (tested sha256 "
            f"{(passed.config_sha256 or '?')[:12]}..., now {now[:12]}...): rerun it locally, or force with FORCE=1"
        )


class ConfigFlows:
    """upload-config, promote, rollback and pull for one env, on the settings' endpoint."""

    def __init__(self, settings: Settings, store: ContextStore, s3: S3Client, clock: Any) -> None:
        self.settings = settings
        self.store = store
        self.s3 = s3
        self.clock = clock
        self.endpoint = settings.endpoint("s3")

    def _owned(self, context: Context) -> set[str]:
        """The configs this context may overwrite at its key: what it wrote, restored, or pulled from there."""
        target = context.target(self.settings.env, self.endpoint)
        pulled = context.pulled
        same_place = pulled is not None and (pulled.env, pulled.endpoint) == (self.settings.env, self.endpoint)
        return target.written() | ({pulled.sha256} if same_place and pulled else set())

    def plan(self, context: Context) -> client_configs.UploadPlan:
        """What an upload would do (reads only): the diff, the action, whether the key may be overwritten."""
        return client_configs.plan_upload(
            self.s3,
            self.settings.config_bucket(),
            self.settings.config_key(context.client_id),
            context.read_config(),
            self._owned(context),
        )

    def upload(self, context: Context, dry_run: bool = False, promotion: dict[str, Any] | None = None) -> UploadOutcome:
        """Upload the context's config; with promotion (forced, purpose), also record it as the target's promotion."""
        plan = self.plan(context)
        if dry_run:
            return UploadOutcome(plan, None, self.endpoint)
        env = self.settings.env
        backups = context.path / "backups" / env
        done = client_configs.apply_upload(self.s3, plan, context.client_id, backups, self.clock())
        upload = Upload(**done, endpoint=self.endpoint, **(promotion or {}))

        def change(current: Context) -> Context:
            target = current.target(env, self.endpoint)
            if upload.action != "unchanged":
                target = replace(target, uploads=(*target.uploads, upload))
            if promotion is not None:
                target = replace(target, promotion=upload)
            return current.with_target(target)

        self.store.update(context.client_id, change)
        return UploadOutcome(plan, upload, self.endpoint)

    def promote(
        self, context: Context, force: bool = False, dry_run: bool = False, purpose: str | None = None
    ) -> UploadOutcome:
        """Upload and record the promotion; refuse unless the last passed local run tested these bytes (or forced)."""
        if not force:
            check_local_pass(context)
        return self.upload(context, dry_run, promotion={"forced": force, "purpose": purpose})

    def rollback(self, context: Context) -> Rollback:
        """Restore what the context's last upload to the target replaced; record it."""
        env = self.settings.env
        uploads = context.target(env, self.endpoint).uploads
        pending = [i for i, upload in enumerate(uploads) if not upload.rolled_back_at]
        if not pending:
            raise UsageError(f"{context.client_id} has no upload to {env} left to roll back")
        index = pending[-1]
        restored, version_id = client_configs.rollback(self.s3, uploads[index], context.client_id)
        done = Rollback(self.clock().isoformat(), uploads[index].at, uploads[index].uri, restored, version_id)

        def change(current: Context) -> Context:
            target = current.target(env, self.endpoint)
            undone = replace(target.uploads[index], rolled_back_at=done.at)
            uploads = (*target.uploads[:index], undone, *target.uploads[index + 1 :])
            return current.with_target(
                replace(target, uploads=uploads, rollbacks=(*target.rollbacks, done), promotion=None)
            )

        self.store.update(context.client_id, change)
        return done

    def pull(self, client_id: str, now: datetime) -> Context:
        """A new context holding the config of a client found in the env's S3 (someone else promoted it), as pulled."""
        if self.store.exists(client_id):
            raise UsageError(f"{client_id} is already a context here: `make contexts` shows it")
        template, _ = split_client_id(client_id)
        bucket, key = self.settings.config_bucket(), self.settings.config_key(client_id)
        remote = client_configs.read_remote(self.s3, bucket, key)
        uri = f"s3://{bucket}/{key}"
        if not remote.exists or remote.sha256 is None:
            raise UsageError(f"no context {client_id} here and no {uri} on {self.settings.env}: check the client_id")
        client_config.check_config(remote.body, uri, client_id)
        pulled = Pull(now.isoformat(), self.settings.env, uri, remote.sha256, self.endpoint, remote.version_id)
        return self._write_pulled(client_id, template, remote.body, pulled)

    def _write_pulled(self, client_id: str, template: str, config: bytes, pulled: Pull) -> Context:
        path = self.store.path(client_id)
        try:
            os.mkdir(path)  # atomic: a concurrent pull or creation of the same client_id fails here
        except FileExistsError as err:
            raise UsageError(f"{client_id} is already a context here: `make contexts` shows it") from err
        purpose = "pulled from " + pulled.env + (f" on {pulled.endpoint}" if pulled.endpoint else "")
        return self.store.fill(
            path,
            lambda: config,
            lambda sha: Context(client_id, template, purpose, pulled.at, "pulled", sha, path, pulled=pulled),
        )
