"""What the commands share: where things are, settings for an env, the prod guard, run output."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks import interface
from tasks.contexts.store import Context, ContextStore, validate_client_id
from tasks.errors import EXIT_PASSED, UsageError
from tasks.pipeline.checks import CheckResult
from tasks.pipeline.checks import summary as checks_summary
from tasks.pipeline.records import RunRecord, StepResult
from tasks.reports.format import stand_ins
from tasks.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]  # the repository: .env and contexts/ are found from here


def context_store(settings: Settings | None = None) -> ContextStore:
    return ContextStore((settings or load_settings(ROOT)).contexts_dir)


def env_settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(ROOT, {"VECTORA_ENV": args.env, "AWS_PROFILE": args.profile})
    if settings.env == "local" and not settings.custom_endpoint:
        raise UsageError(
            "env local needs the embedded AWS: start `make local-aws` and set the AWS_ENDPOINT_URL it shows"
        )
    return settings


def confirm_prod(settings: Settings, yes: bool, what: str) -> None:
    """Nothing touches prod without --yes, CONFIRM_PROD=1 or a typed confirmation on a terminal."""
    if settings.env != "prod" or yes or settings.confirm_prod:
        return
    if not sys.stdin.isatty():
        confirm = "CONFIRM_PROD=1" if interface.current() == "make" else "--yes (or set CONFIRM_PROD=1)"
        raise UsageError(f"{what} on prod needs confirmation: add {confirm}")
    answer = input(f"{what} on PROD ({settings.region}). Type 'prod' to go on: ")
    if answer.strip() != "prod":
        raise UsageError("not confirmed: nothing was done on prod")


def client_factory(settings: Settings) -> Any:
    from tasks.aws import clients as aws

    return aws.ClientFactory(
        settings.region,
        settings.profile,
        settings.endpoints,
        credentials=settings.credentials,
        origin=settings.credentials_origin(),
    )


def latest(contexts: list[Context], when: Callable[[Context], str | None], what: str) -> Context:
    dated = [(stamp, c) for c in contexts if (stamp := when(c))]
    if not dated:
        raise UsageError(f"no context {what}: give CLIENT_ID=... (`make contexts` lists them)")
    return max(dated, key=lambda pair: pair[0])[1]


def context_for(settings: Settings, client_id: str | None, default: Callable[[list[Context]], Context]) -> Context:
    store = context_store(settings)
    return store.load(validate_client_id(client_id)) if client_id is not None else default(store.list())


def print_step(
    index: int, total: int, result: StepResult, found: list[CheckResult] | None = None, prefix: str = ""
) -> None:
    """A step's line: status, time, funnel counts, and how many data checks held (naming those that did not)."""
    seconds = f"{result.wall_ms / 1000:.2f} s" if result.wall_ms is not None else "n/a"
    counts = " ".join(f"{key}={value}" for key, value in result.counts.items())
    held = checks_summary(found or [])
    print(
        f"{prefix}step {index}/{total} {result.step:<16} {result.function_name:<42} {result.status:<8} {seconds:>8}  "
        f"{counts}{'  ' + held if held else ''}",
        flush=True,
    )
    if result.error:
        print(f"{prefix}    {result.error}", flush=True)


def print_progress(step: str, elapsed: float, prefix: str = "") -> None:
    print(f"{prefix}    ... {step} still running ({elapsed:.0f} s)", flush=True)


def finish_run(context: Context, record: RunRecord, prefix: str = "") -> int:
    folder = context.runs_dir / record.run_id
    print(f"{prefix}run {record.run_id}: {record.status}{stand_ins(record)}")
    print(f"{prefix}report: {os.path.relpath(folder / 'report.md')}")
    print(f"{prefix}html: {os.path.relpath(folder / 'report.html')}", flush=True)
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file and (folder / "report.md").is_file():
        try:
            with open(summary_file, "a", encoding="utf-8") as handle:
                handle.write((folder / "report.md").read_text(encoding="utf-8") + "\n")
        except OSError as err:  # name the file: a failed write() does not
            raise OSError(err.errno, err.strerror, summary_file) from err
    if record.status != "passed" and record.error:
        print(f"{prefix}error: {interface.for_interface(record.error)}", file=sys.stderr, flush=True)
    return record.exit_code if record.exit_code is not None else EXIT_PASSED
