"""The command line: argparse subcommands. The only place that prints and picks exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tasks.contexts import ContextStore, validate_client_id
from tasks.errors import EXIT_INTERRUPTED, EXIT_MEANINGS, EXIT_PASSED, EXIT_USAGE, ToolkitError
from tasks.settings import load_settings
from tasks.workflow import StepResult

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = "lai_weekly"


class _Parser(argparse.ArgumentParser):
    """argparse, ending its usage errors with the same `exit 2: ...` line as every other failure."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        print(f"exit {EXIT_USAGE}: {EXIT_MEANINGS[EXIT_USAGE]}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m tasks",
        description="Vectora Inbox E2E toolkit. Exit codes: 0 passed, 1 a step or check failed, 2 usage or bad input, "
        "3 environment/credentials/busy, 4 outcome unknown, 130 interrupted.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    context = commands.add_parser("context", help="create, list or show test contexts")
    context_commands = context.add_subparsers(dest="context_command", required=True, metavar="ACTION")
    new = context_commands.add_parser("new", help="create a context from a template; prints its client_id")
    new.add_argument("--template", default=DEFAULT_TEMPLATE, help=f"template name (default {DEFAULT_TEMPLATE})")
    new.add_argument("--purpose", default=None, help="why this context exists (free text)")
    context_commands.add_parser("list", help="list contexts: client_id, purpose, status, last run")
    show = context_commands.add_parser("show", help="print a context's record as JSON")
    show.add_argument("client_id")

    local = commands.add_parser("local-e2e", help="run the whole workflow on the embedded AWS (no account needed)")
    local.add_argument("--client-id", default=None, help="rerun this existing context (default: create a new one)")
    local.add_argument("--template", default=DEFAULT_TEMPLATE, help="template of the new context")
    local.add_argument("--purpose", default=None, help="purpose of the new context")
    return parser


def _store() -> ContextStore:
    return ContextStore(load_settings(ROOT).contexts_dir)


def _context_new(args: argparse.Namespace) -> int:
    from tasks.local_e2e import default_purpose, utc_now

    now = utc_now()
    context = _store().create(args.template, args.purpose or default_purpose(now), now)
    print(context.client_id)
    return EXIT_PASSED


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _context_list(args: argparse.Namespace) -> int:
    contexts = _store().list()
    if not contexts:
        print("no contexts yet: `make context` or `make local-e2e` creates one")
        return EXIT_PASSED
    print(f"{'client_id':<22} {'status':<12} {'last run':<32} purpose")
    for context in contexts:
        last = context.last_run
        last_text = f"{last['run_id']} {last['status']}" if last else "-"
        if last and last["status"] == "running" and not _lock_held(context.path / ".run.lock"):
            last_text = f"{last['run_id']} unfinished"
        print(f"{context.client_id:<22} {context.status:<12} {last_text:<32} {_one_line(context.purpose, 60)}")
    return EXIT_PASSED


def _lock_held(path: Path) -> bool:
    """Whether a live process holds the run lock at path."""
    import fcntl

    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _context_show(args: argparse.Namespace) -> int:
    context = _store().load(args.client_id)
    print(
        json.dumps(
            json.loads((context.path / "context.json").read_text(encoding="utf-8")), indent=2, ensure_ascii=False
        )
    )
    return EXIT_PASSED


def _print_step(index: int, total: int, result: StepResult) -> None:
    seconds = f"{result.wall_ms / 1000:.2f} s" if result.wall_ms is not None else "n/a"
    counts = " ".join(f"{key}={value}" for key, value in result.counts.items())
    print(
        f"step {index}/{total} {result.step:<16} {result.function_name:<42} {result.status:<8} {seconds:>8}  {counts}",
        flush=True,
    )
    if result.error:
        print(f"    {result.error}", flush=True)


def _local_e2e(args: argparse.Namespace) -> int:
    from tasks.local_e2e import LocalE2E

    settings = load_settings(ROOT, {"VECTORA_ENV": "local"})
    store = ContextStore(settings.contexts_dir)
    client_id = validate_client_id(args.client_id) if args.client_id is not None else None
    flow = LocalE2E(settings, store, on_step_end=_print_step)
    context = flow.context(client_id, args.template, args.purpose)
    print(f"context {context.client_id}: running the workflow on the embedded AWS", flush=True)
    record = flow.run(context)
    report = context.runs_dir / record.run_id / "report.md"
    print(f"run {record.run_id}: {record.status}")
    print(f"report: {os.path.relpath(report)}")
    if record.status != "passed" and record.error:
        print(f"error: {record.error}", file=sys.stderr)
    return record.exit_code if record.exit_code is not None else EXIT_PASSED


COMMANDS = {
    ("context", "new"): _context_new,
    ("context", "list"): _context_list,
    ("context", "show"): _context_show,
    ("local-e2e", None): _local_e2e,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code. A failing command's last line is `exit N: meaning`."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler = COMMANDS[(args.command, getattr(args, "context_command", None))]
    try:
        code = handler(args)
    except ToolkitError as err:
        if args.debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        code = err.exit_code
    except KeyboardInterrupt:
        print("interrupted: stopped waiting (a Lambda already invoked may still complete)", file=sys.stderr)
        code = EXIT_INTERRUPTED
    if code != EXIT_PASSED:
        print(f"exit {code}: {EXIT_MEANINGS.get(code, 'failed')}", file=sys.stderr)
    return code
