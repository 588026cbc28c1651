"""Context-level config flows on a target (an env on an endpoint): upload-config, promote, rollback, pull.

Each is recorded in context.json under the target it touched, so an emulated env (`make local-aws`) never counts as
the real one. Planning (a dry run) and carrying out are separate: `plan_upload` only reads.

An upload is recoverable at every instant: its intent (what it will put, what it replaces and where that is kept) is
recorded as the target's `pending` upload before the put, and completed after it. A command that finds a pending
upload (the recording after the put failed: disk full, a crash) first finishes it when S3 holds its config, or
discards it when S3 does not (`resume`), so the rerun and `rollback` always know what the put replaced.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tasks.aws import client_configs
from tasks.contexts import client_config
from tasks.contexts.records import Pull, Rollback, TargetRecord, Upload
from tasks.contexts.store import Context, ContextStore, split_client_id
from tasks.errors import Conflict, UsageError
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

    def __init__(
        self,
        settings: Settings,
        store: ContextStore,
        s3: S3Client,
        clock: Any,
        on_note: Callable[[str], None] = lambda note: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.s3 = s3
        self.clock = clock
        self.on_note = on_note  # told what was done about an unfinished upload
        self.endpoint = settings.endpoint("s3")

    def _remote(self, uri: str) -> client_configs.RemoteObject:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return client_configs.read_remote(self.s3, bucket, key, self.settings.max_config_bytes)

    def plan(self, context: Context) -> client_configs.UploadPlan:
        """What an upload would do (reads only): the diff, the action, whether the key may be overwritten."""
        return client_configs.plan_upload(
            self.s3,
            self.settings.config_bucket(),
            self.settings.config_key(context.client_id),
            context.read_config(),
            context.configs_written(self.settings.env, self.endpoint),  # what it may overwrite
            self.settings.max_config_bytes,
        )

    def _change_target(self, context: Context, change: Callable[[TargetRecord], TargetRecord], write: bool) -> Context:
        """The context with its record of this target changed: written under the context's lock, or only in memory."""
        env, endpoint = self.settings.env, self.endpoint

        def changed(current: Context) -> Context:
            return current.with_target(change(current.target(env, endpoint)))

        return self.store.update(context.client_id, changed) if write else changed(context)

    def resume(self, context: Context, dry_run: bool = False) -> Context:
        """The context with its target's unfinished upload, if any, finished (S3 holds its config) or discarded.

        What was done is told to on_note; a dry run tells what the real command will do and writes nothing.
        """
        pending = context.target(self.settings.env, self.endpoint).pending
        if pending is None:
            return context
        what = "promotion" if pending.forced is not None else "upload"
        remote = self._remote(pending.uri)
        if remote.exists and remote.sha256 == pending.sha256:
            done = replace(pending, version_id=remote.version_id)
            context = self._change_target(context, lambda target: target.with_upload(done), not dry_run)
            verb = "will finish" if dry_run else "finished"
            self.on_note(f"{verb} the unfinished {what} of {pending.at}: {pending.uri} holds its config")
            return context
        context = self._change_target(context, lambda target: replace(target, pending=None), not dry_run)
        replaced = (pending.replaced or {}).get("sha256")
        why = "it never reached S3" if remote.sha256 == replaced else "S3 holds another config now"
        self.on_note(f"{'will discard' if dry_run else 'discarded'} the unfinished {what} of {pending.at}: {why}")
        return context

    def upload(self, context: Context, dry_run: bool = False, promotion: dict[str, Any] | None = None) -> UploadOutcome:
        """Upload the context's config; with promotion (forced, purpose), also record it as the target's promotion.

        An unfinished upload is resumed first. The intent is recorded before the put and completed after it.
        """
        context = self.resume(context, dry_run)
        plan = self.plan(context)
        client_configs.check_owned(plan)
        if dry_run:
            return UploadOutcome(plan, None, self.endpoint)
        backups = context.path / "backups" / self.settings.env
        intended = client_configs.intent(plan, backups, self.clock())
        upload = Upload(**intended, endpoint=self.endpoint, **(promotion or {}))
        if plan.action != "unchanged":
            self._change_target(context, lambda target: replace(target, pending=upload), write=True)
            try:
                upload = replace(upload, version_id=client_configs.put(self.s3, plan, context.client_id))
            except Conflict:  # the condition failed: nothing was written
                self._change_target(context, lambda target: replace(target, pending=None), write=True)
                raise
        self._change_target(context, lambda target: target.with_upload(upload), write=True)
        return UploadOutcome(plan, upload, self.endpoint)

    def promote(
        self, context: Context, force: bool = False, dry_run: bool = False, purpose: str | None = None
    ) -> UploadOutcome:
        """Upload and record the promotion; refuse unless the last passed local run tested these bytes (or forced)."""
        if not force:
            check_local_pass(context)
        return self.upload(context, dry_run, promotion={"forced": force, "purpose": purpose})

    def rollback(self, context: Context) -> Rollback:
        """Restore what the last upload to the target replaced (an unfinished one finished first); record it."""
        context = self.resume(context)
        uploads = context.target(self.settings.env, self.endpoint).uploads
        left = [i for i, upload in enumerate(uploads) if not upload.rolled_back_at]
        if not left:
            raise UsageError(f"{context.client_id} has no upload to {self.settings.env} left to roll back")
        index = left[-1]
        restored, version_id = client_configs.rollback(
            self.s3, uploads[index], context.client_id, self.settings.max_config_bytes
        )
        done = Rollback(self.clock().isoformat(), uploads[index].at, uploads[index].uri, restored, version_id)

        def change(target: TargetRecord) -> TargetRecord:
            undone = replace(target.uploads[index], rolled_back_at=done.at)
            uploads = (*target.uploads[:index], undone, *target.uploads[index + 1 :])
            return replace(target, uploads=uploads, rollbacks=(*target.rollbacks, done), promotion=None)

        self._change_target(context, change, write=True)
        return done

    def pull(self, client_id: str, now: datetime) -> Context:
        """A new context holding the config of a client found in the env's S3 (someone else promoted it), as pulled."""
        if self.store.exists(client_id):
            raise UsageError(f"{client_id} is already a context here: `make contexts` shows it")
        template, _ = split_client_id(client_id)
        bucket, key = self.settings.config_bucket(), self.settings.config_key(client_id)
        uri = f"s3://{bucket}/{key}"
        remote = self._remote(uri)
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
