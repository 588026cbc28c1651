"""Context-level config flows on an env: upload-config, promote and rollback, each recorded in context.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasks.aws import client_configs
from tasks.contexts.store import Context, ContextStore
from tasks.errors import UsageError
from tasks.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class UploadOutcome:
    """A plan, and what applying it did (None for a dry run)."""

    plan: client_configs.UploadPlan
    record: dict[str, Any] | None


def env_record(context: Context, env: str) -> dict[str, Any]:
    return context.envs.get(env) or {}


def _written(context: Context, env: str) -> set[str]:
    """SHA-256 of every config this context put at its key on env (uploads, and what rollbacks restored)."""
    record = env_record(context, env)
    shas = {u["sha256"] for u in record.get("uploads", [])}
    return shas | {r["restored"] for r in record.get("rollbacks", []) if r.get("restored")}


def check_local_pass(context: Context) -> None:
    """Refuse unless the context's last local run passed with the config as it is now."""
    last = (context.local or {}).get("last_run")
    if not last or last["status"] != "passed":
        raise UsageError(
            f"{context.client_id} has no passed local run: run `make local-e2e CLIENT_ID={context.client_id}` "
            "first, or force with FORCE=1 (--force)"
        )
    if last.get("config_sha256") != client_configs.sha256(context.config_path.read_bytes()):
        raise UsageError(
            f"{context.client_id}'s config changed since its last local run: rerun it locally, or force with FORCE=1"
        )


class ConfigFlows:
    """upload-config, promote and rollback for one env."""

    def __init__(self, settings: Settings, store: ContextStore, s3: S3Client, clock: Any) -> None:
        self.settings = settings
        self.store = store
        self.s3 = s3
        self.clock = clock

    def upload(self, context: Context, dry_run: bool = False, promotion: dict[str, Any] | None = None) -> UploadOutcome:
        """Upload the context's config; with promotion, also record it as the env's promotion."""
        env = self.settings.env
        plan = client_configs.plan_upload(
            self.s3,
            self.settings.config_bucket(),
            self.settings.config_key(context.client_id),
            context.read_config(),
            _written(context, env),
        )
        if dry_run:
            return UploadOutcome(plan, None)
        now = self.clock()
        record = client_configs.apply_upload(self.s3, plan, context.client_id, context.path / "backups" / env, now)
        record["endpoint"] = self.settings.endpoint("s3")

        def change(document: dict[str, Any]) -> None:
            target = document.setdefault("envs", {}).setdefault(env, {})
            if record["action"] != "unchanged":
                target.setdefault("uploads", []).append(record)
            if promotion is not None:
                entry = {**record, **promotion}
                target["promotion"] = entry
                target.setdefault("promotions", []).append(entry)

        self.store.update(context.client_id, change)
        return UploadOutcome(plan, record)

    def promote(
        self, context: Context, force: bool = False, dry_run: bool = False, purpose: str | None = None
    ) -> UploadOutcome:
        """Upload and record the promotion; refuse unless the last local run passed with these bytes (or forced)."""
        if not force:
            check_local_pass(context)
        return self.upload(context, dry_run, promotion={"forced": force, "purpose": purpose})

    def rollback(self, context: Context) -> dict[str, Any]:
        """Restore what the context's last upload to the env replaced; record it."""
        env = self.settings.env
        uploads = env_record(context, env).get("uploads", [])
        pending = [i for i, upload in enumerate(uploads) if not upload.get("rolled_back_at")]
        if not pending:
            raise UsageError(f"{context.client_id} has no upload to {env} left to roll back")
        index = pending[-1]
        result = client_configs.rollback(self.s3, uploads[index], context.client_id)
        result |= {"at": self.clock().isoformat(), "undid": uploads[index]["at"], "uri": uploads[index]["uri"]}

        def change(document: dict[str, Any]) -> None:
            target = document["envs"][env]
            target["uploads"][index]["rolled_back_at"] = result["at"]
            target.setdefault("rollbacks", []).append(result)
            target["promotion"] = None

        self.store.update(context.client_id, change)
        return result
