"""upload-config, promote and rollback."""

from __future__ import annotations

import argparse
import os
from typing import Any

from tasks.cli.common import client_factory, confirm_prod, context_for, context_store, env_settings, latest
from tasks.contexts.store import Context, utc_now, validate_client_id
from tasks.errors import EXIT_PASSED
from tasks.settings import Settings


def _show_plan(outcome: Any, dry_run: bool) -> None:
    plan = outcome.plan
    if plan.action == "update":
        diff = plan.diff()
        print(diff, end="" if diff.endswith("\n") else "\n")
    elif plan.action == "create":
        print(f"new key: {len(plan.local.splitlines())} lines, sha256 {plan.local_sha256}")
    keep = "previous version kept (versioned bucket)" if plan.versioned else "previous config backed up locally"
    done = {"create": "create", "update": f"update ({keep})", "unchanged": "nothing to do: identical content"}
    where = f"custom endpoint {outcome.endpoint}" if outcome.endpoint else "AWS"
    print(f"{'plan' if dry_run else 'done'}: {done[plan.action]} {plan.uri} on {where}")
    upload = outcome.upload
    if upload and upload.version_id:
        print(f"version: {upload.version_id}")
    if upload and (upload.replaced or {}).get("backup"):
        print(f"backup: {os.path.relpath(upload.replaced['backup'])}")


def _config_flows(settings: Settings) -> Any:
    from tasks.flows.config_flows import ConfigFlows

    return ConfigFlows(
        settings, context_store(settings), client_factory(settings).s3(), utc_now, lambda note: print(note, flush=True)
    )


def upload_config_command(args: argparse.Namespace) -> int:
    settings = env_settings(args)
    context = context_store(settings).load(validate_client_id(args.client_id))
    if not args.dry_run:
        confirm_prod(settings, args.yes, f"upload {context.client_id}'s config")
    _show_plan(_config_flows(settings).upload(context, dry_run=args.dry_run), args.dry_run)
    return EXIT_PASSED


def _local_pass_time(context: Context) -> str | None:
    passed = context.last_local_pass
    return passed.finished_at if passed else None


def promote_command(args: argparse.Namespace) -> int:
    settings = env_settings(args)
    context = context_for(settings, args.client_id, lambda cs: latest(cs, _local_pass_time, "with a passed local run"))
    if not args.dry_run:
        confirm_prod(settings, args.yes, f"promote {context.client_id}")
    print(f"promote {context.client_id} to {settings.env}")
    outcome = _config_flows(settings).promote(context, force=args.force, dry_run=args.dry_run, purpose=args.purpose)
    _show_plan(outcome, args.dry_run)
    return EXIT_PASSED


def pull_context(settings: Settings, client_id: str) -> Context:
    """A new context holding the config of client_id as found in the env's S3 (recorded as pulled)."""
    return _config_flows(settings).pull(validate_client_id(client_id), utc_now())


def pull_command(args: argparse.Namespace) -> int:
    settings = env_settings(args)
    context = pull_context(settings, args.client_id)
    pulled = context.pulled
    assert pulled is not None
    where = f"custom endpoint {pulled.endpoint}" if pulled.endpoint else "AWS"
    version = f", version {pulled.version_id}" if pulled.version_id else ""
    print(f"pulled {context.client_id} from {pulled.uri} on {where} (sha256 {pulled.sha256[:12]}...{version})")
    print(f"context: {os.path.relpath(context.path)}")
    return EXIT_PASSED


def rollback_command(args: argparse.Namespace) -> int:
    settings = env_settings(args)
    context = context_store(settings).load(validate_client_id(args.client_id))
    confirm_prod(settings, args.yes, f"roll back {context.client_id}'s config")
    done = _config_flows(settings).rollback(context)
    restored = "removed the key (it did not exist before)" if done.restored is None else "restored the previous config"
    print(f"rollback {done.uri}: {restored}")
    return EXIT_PASSED
