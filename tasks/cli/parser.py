"""The argument parser: every task command and its options."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from tasks.errors import EXIT_USAGE, UsageError
from tasks.interface import print_exit_line
from tasks.settings import STEPS, parse_port

DEFAULT_TEMPLATE = "lai_weekly"


class ToolkitParser(argparse.ArgumentParser):
    """argparse, ending its usage errors with the same `exit 2: ...` line as every other failure."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        print_exit_line(EXIT_USAGE)
        sys.exit(EXIT_USAGE)


def _port(text: str) -> int:
    try:
        return parse_port(text, "--port")
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _env_options(parser: argparse.ArgumentParser, client_required: bool = False) -> None:
    parser.add_argument("--client-id", required=client_required, default=None, help="the context's client_id")
    parser.add_argument("--env", default=None, help="dev, stage or prod (or local with a custom endpoint); default dev")
    parser.add_argument("--profile", default=None, help="AWS profile (default: AWS_PROFILE, else rag-lai-prod)")
    parser.add_argument("--yes", action="store_true", help="confirm an action on prod (or CONFIRM_PROD=1)")


def build_parser() -> argparse.ArgumentParser:
    parser = ToolkitParser(
        prog="python -m tasks",
        description="Vectora Inbox E2E toolkit. Exit codes: 0 passed, 1 a step or check failed, 2 usage or bad input, "
        "3 environment/credentials/busy, 4 outcome unknown, 130 interrupted, 143 terminated (SIGTERM).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    context = commands.add_parser("context", help="create, list or show test contexts")
    context_commands = context.add_subparsers(dest="context_command", required=True, metavar="ACTION")
    new = context_commands.add_parser("new", help="create a context from a template; prints its client_id")
    new.add_argument("--template", default=DEFAULT_TEMPLATE, help=f"template name (default {DEFAULT_TEMPLATE})")
    new.add_argument("--purpose", default=None, help="why this context exists (free text)")
    context_commands.add_parser("list", help="list contexts: client_id, status, last run, purpose")
    show = context_commands.add_parser("show", help="print a context's record as JSON")
    show.add_argument("client_id")

    commands.add_parser("recordings", help="list the recordings: service, age, hits in the last run, request")

    local = commands.add_parser("local-e2e", help="run the whole workflow on the embedded AWS (no account needed)")
    local.add_argument("--client-id", default=None, help="rerun this existing context (default: create a new one)")
    local.add_argument("--template", default=DEFAULT_TEMPLATE, help="template of the new context")
    local.add_argument("--purpose", default=None, help="purpose of the new context")
    local.add_argument(
        "--payload", default=None, help='extra event fields as JSON, e.g. \'{"simulate": "bedrock_down"}\''
    )

    upload = commands.add_parser("upload-config", help="upload a context's client config to an env's config bucket")
    _env_options(upload, client_required=True)
    upload.add_argument("--dry-run", action="store_true", help="show the diff and the plan; write nothing")

    promote = commands.add_parser("promote", help="upload-config + record the promotion (needs a passed local run)")
    _env_options(promote)
    promote.add_argument("--force", action="store_true", help="promote without a passed local run (recorded)")
    promote.add_argument("--purpose", default=None, help="why this promotion (recorded with it)")
    promote.add_argument("--dry-run", action="store_true", help="show the diff and the plan; write nothing")

    rollback = commands.add_parser("rollback", help="restore the config the context's last upload replaced")
    _env_options(rollback, client_required=True)

    pull = commands.add_parser("pull", help="make a context of a client found in an env's S3 (promoted elsewhere)")
    _env_options(pull, client_required=True)

    e2e = commands.add_parser("aws-e2e", help="invoke an env's three Lambdas in order, verify outputs, record")
    _env_options(e2e)
    e2e.add_argument("--client-ids", nargs="+", default=None, metavar="CLIENT_ID", help="run several contexts")
    e2e.add_argument("--parallel", type=int, default=4, metavar="K", help="with --client-ids: K at a time (default 4)")
    e2e.add_argument("--payload", default=None, help="extra event fields as JSON, e.g. '{\"period_days\": 7}'")
    e2e.add_argument("--from", dest="start", default=None, metavar="STEP", help=f"start at STEP ({', '.join(STEPS)})")
    e2e.add_argument("--dry-run", action="store_true", help="print what would be invoked and touched; do nothing")
    e2e.add_argument("--publish", action="store_true", help="copy run.json and report.md to the env's data bucket")
    e2e.add_argument(
        "--force", action="store_true", help="run even when S3 holds a config this context did not promote (recorded)"
    )

    sfn = commands.add_parser("sfn-deploy", help="create or update an env's Step Functions state machine (diff first)")
    sfn.add_argument("--env", default=None, help="dev, stage or prod (or local with a custom endpoint); default dev")
    sfn.add_argument("--profile", default=None, help="AWS profile (default: AWS_PROFILE, else rag-lai-prod)")
    sfn.add_argument("--yes", action="store_true", help="confirm a deploy on prod (or CONFIRM_PROD=1)")
    sfn.add_argument("--parallel", type=int, default=4, metavar="K", help="clients at a time, 1 to 40 (default 4)")
    sfn.add_argument("--dry-run", action="store_true", help="show the diff and the plan; deploy nothing")

    report = commands.add_parser("report", help="re-render a run's reports, summarize contexts, or `compare A B ...`")
    report.add_argument("words", nargs="*", metavar="compare CLIENT_ID ...", help="compare the latest runs of these")
    report.add_argument("--client-id", default=None, help="re-render this context's latest run (default: summary)")
    report.add_argument("--run-id", default=None, help="with --client-id: that run instead of the latest")
    report.add_argument("--json", action="store_true", help="print the machine form")
    report.add_argument("--env", default=None, help="also read the runs published to this env's data bucket")
    report.add_argument("--profile", default=None, help="AWS profile for --env")
    report.add_argument("--html", default=None, metavar="PATH", help="compare: write the HTML page here")

    local_aws = commands.add_parser("local-aws", help="serve the embedded AWS (S3 + Lambda) until Ctrl-C")
    local_aws.add_argument(
        "--port", type=_port, default=None, help="port on 127.0.0.1 (default LOCAL_AWS_PORT, 0: any)"
    )
    return parser
