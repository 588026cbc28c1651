"""context new | list | show."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from tasks.cli.common import ROOT, client_factory, context_store
from tasks.contexts.files import lock_held
from tasks.contexts.listing import Listed, listing
from tasks.contexts.records import RunSummary, target_label
from tasks.contexts.store import BrokenContext, Context, default_purpose, utc_now
from tasks.errors import EXIT_PASSED, ToolkitError
from tasks.interface import for_interface
from tasks.settings import DEFAULT_SOURCE, ENVS, Settings, load_settings
from tasks.visible import visible


def _allocation_envs(settings: Settings) -> dict[str, bool]:
    """The envs whose S3 history allocation reads, each with whether it must be read (else: when reachable).

    ALLOCATION_ENVS must be; so is, when reachable, every AWS env whose target is configured: a custom S3 endpoint
    (e.g. `make local-aws`'s), or a profile chosen for it (--profile, AWS_PROFILE, AWS_PROFILE_<ENV>).
    """
    configured = {
        env: False
        for env in ENVS
        if env != "local"
        and (settings.endpoint("s3") or getattr(settings.profiles.get(env), "source", DEFAULT_SOURCE) != DEFAULT_SOURCE)
    }
    return configured | dict.fromkeys(settings.allocation_envs, True)


def _other_versions(settings: Settings, template: str) -> list[int]:
    """Versions of template used in the S3 history of the envs allocation consults (`_allocation_envs`)."""
    envs = _allocation_envs(settings)
    if not envs:
        return []
    from tasks.aws import client_configs  # boto3 only when needed: `context new` stays fast

    found: list[int] = []
    for env, required in envs.items():
        bucket = settings.config_bucket(env)
        try:
            s3 = client_factory(replace(settings, env=env)).s3()
            used = client_configs.used_versions(s3, bucket, settings.config_key_template, template)
        except ToolkitError as err:
            if required:
                raise
            print(f"warning: client_id allocation did not read {env}'s S3 history ({err})", file=sys.stderr)
            continue
        if used.ignored:
            print(client_configs.ignored_keys_warning(bucket, used.ignored), file=sys.stderr)
        found += used.versions
    return found


def create_context(settings: Settings, template: str, purpose: str | None) -> Context:
    now = utc_now()
    store = context_store(settings)
    store.template_path(template)
    return store.create(
        template, purpose or default_purpose(now), now, other_versions=_other_versions(settings, template)
    )


def context_new_command(args: argparse.Namespace) -> int:
    print(create_context(load_settings(ROOT), args.template, args.purpose).client_id)
    return EXIT_PASSED


def _one_line(text: str, width: int) -> str:
    """text on one line, control characters escaped (an ESC is shown as \\x1b, never sent to the terminal)."""
    text = visible(" ".join(text.split()), keep="")
    return text if len(text) <= width else text[: width - 1] + "…"


def _run_text(context: Listed, run: RunSummary | None) -> str:
    if not run:
        return "-"
    status = run.status
    if status == "running" and not lock_held(context.path / ".run.lock"):
        status = "unfinished"
    return f"{target_label(run.env, run.endpoint)} {run.run_id} {status}"


def _row(context: Listed | BrokenContext) -> str:
    if isinstance(context, BrokenContext):
        return f"{context.client_id:<22} {'broken':<12} {'-':<16} {'-':<42} {_one_line(context.problem, 200)}"
    last = _run_text(context, context.last_run)
    return (
        f"{context.client_id:<22} {context.status:<12} {','.join(context.promoted) or '-':<16} {last:<42} "
        f"{_one_line(context.purpose, 60)}"
    )


def context_list_command(args: argparse.Namespace) -> int:
    contexts = listing(context_store())
    if not contexts:
        print(for_interface("no contexts yet: `make new-context` or `make local-e2e` creates one"))
        return EXIT_PASSED
    print(f"{'client_id':<22} {'status':<12} {'promoted':<16} {'last run':<42} purpose")
    for context in contexts:
        print(_row(context))
    return EXIT_PASSED


def context_show_command(args: argparse.Namespace) -> int:
    context = context_store().load(args.client_id)
    document = json.loads((context.path / "context.json").read_text(encoding="utf-8"))
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return EXIT_PASSED
