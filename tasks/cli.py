"""The command line: argparse subcommands. The only place that prints and picks exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from tasks.contexts import Context, ContextStore, default_purpose, utc_now, validate_client_id
from tasks.errors import EXIT_INTERRUPTED, EXIT_MEANINGS, EXIT_PASSED, EXIT_USAGE, ToolkitError, UsageError
from tasks.files import lock_held
from tasks.secrets import RedactingStream
from tasks.settings import STEPS, Settings, load_settings
from tasks.workflow import RunRecord, StepResult

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = "lai_weekly"
AWS_ENVS = ("dev", "stage", "prod", "local")


class _Parser(argparse.ArgumentParser):
    """argparse, ending its usage errors with the same `exit 2: ...` line as every other failure."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        print(f"exit {EXIT_USAGE}: {EXIT_MEANINGS[EXIT_USAGE]}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _env_options(parser: argparse.ArgumentParser, client_required: bool = False) -> None:
    parser.add_argument("--client-id", required=client_required, default=None, help="the context's client_id")
    parser.add_argument("--env", default=None, help="dev, stage or prod (or local with a custom endpoint); default dev")
    parser.add_argument("--profile", default=None, help="AWS profile (default: AWS_PROFILE, else rag-lai-prod)")
    parser.add_argument("--yes", action="store_true", help="confirm an action on prod (or CONFIRM_PROD=1)")


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
    context_commands.add_parser("list", help="list contexts: client_id, status, last run, purpose")
    show = context_commands.add_parser("show", help="print a context's record as JSON")
    show.add_argument("client_id")

    local = commands.add_parser("local-e2e", help="run the whole workflow on the embedded AWS (no account needed)")
    local.add_argument("--client-id", default=None, help="rerun this existing context (default: create a new one)")
    local.add_argument("--template", default=DEFAULT_TEMPLATE, help="template of the new context")
    local.add_argument("--purpose", default=None, help="purpose of the new context")

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

    e2e = commands.add_parser("aws-e2e", help="invoke an env's three Lambdas in order, verify outputs, record")
    _env_options(e2e)
    e2e.add_argument("--client-ids", nargs="+", default=None, metavar="CLIENT_ID", help="run several contexts")
    e2e.add_argument("--parallel", type=int, default=4, metavar="K", help="with --client-ids: K at a time (default 4)")
    e2e.add_argument("--payload", default=None, help="extra event fields as JSON, e.g. '{\"period_days\": 7}'")
    e2e.add_argument("--from", dest="start", default=None, metavar="STEP", help=f"start at STEP ({', '.join(STEPS)})")
    e2e.add_argument("--dry-run", action="store_true", help="print what would be invoked and touched; do nothing")
    e2e.add_argument("--publish", action="store_true", help="copy run.json and report.md to the env's data bucket")

    report = commands.add_parser("report", help="re-render a run's reports, summarize contexts, or `compare A B ...`")
    report.add_argument("words", nargs="*", metavar="compare CLIENT_ID ...", help="compare the latest runs of these")
    report.add_argument("--client-id", default=None, help="re-render this context's latest run (default: summary)")
    report.add_argument("--run-id", default=None, help="with --client-id: that run instead of the latest")
    report.add_argument("--json", action="store_true", help="print the machine form")
    report.add_argument("--env", default=None, help="also read the runs published to this env's data bucket")
    report.add_argument("--profile", default=None, help="AWS profile for --env")
    report.add_argument("--html", default=None, metavar="PATH", help="compare: write the HTML page here")

    local_aws = commands.add_parser("local-aws", help="serve the embedded AWS (S3 + Lambda) until Ctrl-C")
    local_aws.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default LOCAL_AWS_PORT, 0: any)")
    return parser


# --- contexts ------------------------------------------------------------------------------------------------------


def _store(settings: Settings | None = None) -> ContextStore:
    return ContextStore((settings or load_settings(ROOT)).contexts_dir)


def _other_versions(settings: Settings, template: str) -> list[int]:
    """Versions of template used in the S3 history of the envs named by ALLOCATION_ENVS."""
    if not settings.allocation_envs:
        return []
    from tasks import config_upload  # boto3 only when needed: `context new` stays fast

    found: list[int] = []
    for env in settings.allocation_envs:
        s3 = _factory(replace(settings, env=env)).s3()
        found += config_upload.used_versions(s3, settings.config_bucket(env), settings.config_key_template, template)
    return found


def _create_context(settings: Settings, template: str, purpose: str | None) -> Context:
    now = utc_now()
    store = _store(settings)
    store.template_path(template)
    return store.create(
        template, purpose or default_purpose(now), now, other_versions=_other_versions(settings, template)
    )


def _context_new(args: argparse.Namespace) -> int:
    print(_create_context(load_settings(ROOT), args.template, args.purpose).client_id)
    return EXIT_PASSED


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _run_text(context: Context, run: dict[str, Any] | None) -> str:
    if not run:
        return "-"
    status = run["status"]
    if status == "running" and not lock_held(context.path / ".run.lock"):
        status = "unfinished"
    where = f"{run['env']}@endpoint" if run.get("endpoint") and run["env"] != "local" else run["env"]
    return f"{where} {run['run_id']} {status}"


def _context_list(args: argparse.Namespace) -> int:
    contexts = _store().list()
    if not contexts:
        print("no contexts yet: `make context` or `make local-e2e` creates one")
        return EXIT_PASSED
    print(f"{'client_id':<22} {'status':<12} {'promoted':<16} {'last run':<42} purpose")
    for context in contexts:
        promoted = ",".join(env for env, record in sorted(context.envs.items()) if record.get("promotion")) or "-"
        print(
            f"{context.client_id:<22} {context.status:<12} {promoted:<16} {_run_text(context, context.last_run):<42} "
            f"{_one_line(context.purpose, 60)}"
        )
    return EXIT_PASSED


def _context_show(args: argparse.Namespace) -> int:
    context = _store().load(args.client_id)
    document = json.loads((context.path / "context.json").read_text(encoding="utf-8"))
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return EXIT_PASSED


# --- runs ----------------------------------------------------------------------------------------------------------


def _print_step(index: int, total: int, result: StepResult, prefix: str = "") -> None:
    seconds = f"{result.wall_ms / 1000:.2f} s" if result.wall_ms is not None else "n/a"
    counts = " ".join(f"{key}={value}" for key, value in result.counts.items())
    print(
        f"{prefix}step {index}/{total} {result.step:<16} {result.function_name:<42} {result.status:<8} {seconds:>8}  "
        f"{counts}",
        flush=True,
    )
    if result.error:
        print(f"{prefix}    {result.error}", flush=True)


def _print_progress(step: str, elapsed: float, prefix: str = "") -> None:
    print(f"{prefix}    ... {step} still running ({elapsed:.0f} s)", flush=True)


def _finish_run(context: Context, record: RunRecord, prefix: str = "") -> int:
    folder = context.runs_dir / record.run_id
    print(f"{prefix}run {record.run_id}: {record.status}")
    print(f"{prefix}report: {os.path.relpath(folder / 'report.md')}")
    print(f"{prefix}html: {os.path.relpath(folder / 'report.html')}", flush=True)
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file and (folder / "report.md").is_file():
        with open(summary_file, "a", encoding="utf-8") as handle:
            handle.write((folder / "report.md").read_text(encoding="utf-8") + "\n")
    if record.status != "passed" and record.error:
        print(f"{prefix}error: {record.error}", file=sys.stderr, flush=True)
    return record.exit_code if record.exit_code is not None else EXIT_PASSED


def _local_e2e(args: argparse.Namespace) -> int:
    from tasks.local_e2e import LocalE2E

    settings = load_settings(ROOT, {"VECTORA_ENV": "local"})
    flow = LocalE2E(settings, _store(settings), on_step_end=_print_step)
    if args.client_id is not None:
        context = _store(settings).load(validate_client_id(args.client_id))
    else:
        context = _create_context(settings, args.template, args.purpose)
    print(f"context {context.client_id}: running the workflow on the embedded AWS", flush=True)
    return _finish_run(context, flow.run(context))


# --- AWS flows -----------------------------------------------------------------------------------------------------


def _env_settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(ROOT, {"VECTORA_ENV": args.env, "AWS_PROFILE": args.profile})
    if settings.env == "local" and not settings.custom_endpoint:
        raise UsageError(
            "env local needs the embedded AWS: start `make local-aws` and set the AWS_ENDPOINT_URL it shows"
        )
    return settings


def _confirm_prod(settings: Settings, yes: bool, what: str) -> None:
    """Nothing touches prod without --yes, CONFIRM_PROD=1 or a typed confirmation on a terminal."""
    if settings.env != "prod" or yes or settings.confirm_prod:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{what} on prod needs confirmation: add --yes (make: CONFIRM_PROD=1)")
    answer = input(f"{what} on PROD ({settings.region}). Type 'prod' to go on: ")
    if answer.strip() != "prod":
        raise UsageError("not confirmed: nothing was done on prod")


def _factory(settings: Settings) -> Any:
    from tasks import aws

    return aws.ClientFactory(settings.region, settings.profile, settings.endpoints)


def _latest(contexts: list[Context], when: Callable[[Context], str | None], what: str) -> Context:
    dated = [(stamp, c) for c in contexts if (stamp := when(c))]
    if not dated:
        raise UsageError(f"no context {what}: give CLIENT_ID=... (`make contexts` lists them)")
    return max(dated, key=lambda pair: pair[0])[1]


def _context_for(settings: Settings, client_id: str | None, default: Callable[[list[Context]], Context]) -> Context:
    store = _store(settings)
    return store.load(validate_client_id(client_id)) if client_id is not None else default(store.list())


def _show_plan(outcome: Any, dry_run: bool) -> None:
    plan = outcome.plan
    if plan.action == "update":
        diff = plan.diff()
        print(diff, end="" if diff.endswith("\n") else "\n")
    elif plan.action == "create":
        print(f"new key: {len(plan.local.splitlines())} lines, sha256 {plan.local_sha256}")
    keep = "previous version kept (versioned bucket)" if plan.versioned else "previous config backed up locally"
    done = {"create": "create", "update": f"update ({keep})", "unchanged": "nothing to do: identical content"}
    print(f"{'plan' if dry_run else 'done'}: {done[plan.action]} {plan.uri}")
    record = outcome.record
    if record and record.get("version_id"):
        print(f"version: {record['version_id']}")
    if record and (record.get("replaced") or {}).get("backup"):
        print(f"backup: {os.path.relpath(record['replaced']['backup'])}")


def _config_flows(settings: Settings) -> Any:
    from tasks.promotion import ConfigFlows

    return ConfigFlows(settings, _store(settings), _factory(settings).s3(), utc_now)


def _upload_config(args: argparse.Namespace) -> int:
    settings = _env_settings(args)
    context = _store(settings).load(validate_client_id(args.client_id))
    if not args.dry_run:
        _confirm_prod(settings, args.yes, f"upload {context.client_id}'s config")
    _show_plan(_config_flows(settings).upload(context, dry_run=args.dry_run), args.dry_run)
    return EXIT_PASSED


def _local_pass_time(context: Context) -> str | None:
    last = (context.local or {}).get("last_run") or {}
    return last.get("finished_at") if last.get("status") == "passed" else None


def _promote(args: argparse.Namespace) -> int:
    settings = _env_settings(args)
    context = _context_for(
        settings, args.client_id, lambda cs: _latest(cs, _local_pass_time, "with a passed local run")
    )
    if not args.dry_run:
        _confirm_prod(settings, args.yes, f"promote {context.client_id}")
    print(f"promote {context.client_id} to {settings.env}")
    outcome = _config_flows(settings).promote(context, force=args.force, dry_run=args.dry_run, purpose=args.purpose)
    _show_plan(outcome, args.dry_run)
    return EXIT_PASSED


def _rollback(args: argparse.Namespace) -> int:
    settings = _env_settings(args)
    context = _store(settings).load(validate_client_id(args.client_id))
    _confirm_prod(settings, args.yes, f"roll back {context.client_id}'s config")
    result = _config_flows(settings).rollback(context)
    restored = (
        "removed the key (it did not exist before)" if result["restored"] is None else "restored the previous config"
    )
    print(f"rollback {result['uri']}: {restored}")
    return EXIT_PASSED


def _promotion_time(env: str) -> Callable[[Context], str | None]:
    return lambda c: ((c.envs.get(env) or {}).get("promotion") or {}).get("at")


def _aws_e2e(args: argparse.Namespace) -> int:
    from tasks.aws_e2e import parse_payload
    from tasks.parallel import run_bounded, worst

    settings = _env_settings(args)
    store = _store(settings)
    if args.client_ids:
        contexts = [store.load(validate_client_id(c)) for c in dict.fromkeys(args.client_ids)]
    else:
        promoted = _promotion_time(settings.env)
        contexts = [
            _context_for(settings, args.client_id, lambda cs: _latest(cs, promoted, f"promoted to {settings.env}"))
        ]
    payloads = {c.client_id: parse_payload(args.payload, c.client_id) for c in contexts}
    if args.dry_run:  # a dry run makes no AWS call: no credentials needed
        for context in contexts:
            print(
                json.dumps(
                    _e2e_flow(settings, None, "").plan(context, args.start, payloads[context.client_id]).__dict__,
                    indent=2,
                )
            )
        print("dry run: nothing invoked")
        return EXIT_PASSED
    _confirm_prod(settings, args.yes, "run the pipeline for " + ", ".join(c.client_id for c in contexts))
    factory = _factory(settings)
    if len(contexts) == 1:
        return _run_on_env(settings, factory, contexts[0], args, payloads[contexts[0].client_id], "")
    parallel = max(1, min(args.parallel, len(contexts)))
    print(f"{len(contexts)} clients on {settings.env}, {parallel} at a time", flush=True)
    codes = run_bounded(
        [
            lambda c=c: _run_on_env(settings, factory, c, args, payloads[c.client_id], f"[{c.client_id}] ")
            for c in contexts
        ],
        parallel,
    )
    print("summary:")
    for context, code in zip(contexts, codes, strict=True):
        print(f"  {context.client_id:<22} exit {code}: {EXIT_MEANINGS.get(code, 'failed')}")
    return worst(codes)


def _e2e_flow(settings: Settings, factory: Any, prefix: str) -> Any:
    from tasks.aws_e2e import AwsE2E

    return AwsE2E(
        settings,
        _store(settings),
        factory,
        utc_now,
        lambda index, total, result: _print_step(index, total, result, prefix),
        lambda step, elapsed: _print_progress(step, elapsed, prefix),
    )


def _run_on_env(
    settings: Settings, factory: Any, context: Context, args: argparse.Namespace, payload: dict[str, Any], prefix: str
) -> int:
    """Run one context's workflow on the env; return its exit code (errors are printed, not raised, with prefix)."""
    try:
        flow = _e2e_flow(settings, factory, prefix)
        plan = flow.plan(context, args.start, payload)
        print(f"{prefix}context {context.client_id}: running the workflow on {flow.target()}", flush=True)
        record = flow.run(context, plan)
        if args.publish or settings.publish_runs:
            from tasks.reports import publish
            from tasks.runs import RunFolder

            where = publish(factory.s3(), settings, record, RunFolder(context.runs_dir / record.run_id))
            print(f"{prefix}published: {where}")
        return _finish_run(context, record, prefix)
    except ToolkitError as err:
        if not prefix:
            raise
        print(f"{prefix}error: {err}", file=sys.stderr, flush=True)
        return err.exit_code


def _report(args: argparse.Namespace) -> int:
    from tasks import reports
    from tasks.report import render_compare, render_summary
    from tasks.report_html import render_compare_html

    settings = load_settings(ROOT, {"VECTORA_ENV": args.env, "AWS_PROFILE": args.profile})
    store = _store(settings)
    published = reports.published_runs(_factory(settings).s3(), settings) if args.env else []
    if args.words:
        if args.words[0] != "compare":
            raise UsageError(f"unknown report action {args.words[0]!r}: use `report compare CLIENT_ID CLIENT_ID ...`")
        records = reports.runs_to_compare(store, [validate_client_id(c) for c in args.words[1:]], published)
        if args.json:
            print(json.dumps([r.to_json() for r in records], indent=2, ensure_ascii=False))
            return EXIT_PASSED
        print(render_compare(records), end="")
        html = (
            Path(args.html)
            if args.html
            else settings.contexts_dir / "reports" / ("compare-" + "-".join(args.words[1:]) + ".html")
        )
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_compare_html(records), encoding="utf-8")
        print(f"html: {os.path.relpath(html)}")
        return EXIT_PASSED
    if args.client_id is not None:
        record, paths = reports.rerender(store.load(validate_client_id(args.client_id)), args.run_id)
        if args.json:
            print(json.dumps(record.to_json(), indent=2, ensure_ascii=False))
        else:
            print(paths[0].read_text(encoding="utf-8"), end="")
            print("rendered: " + ", ".join(os.path.relpath(p) for p in paths))
        return EXIT_PASSED
    rows = reports.summary(store, published)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "client_id": r.client_id,
                        "purpose": r.purpose,
                        "status": r.status,
                        "envs": r.envs,
                        "last_run": r.last.to_json() if r.last else None,
                    }
                    for r in rows
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        print(render_summary(rows), end="")
    return EXIT_PASSED


def _local_aws(args: argparse.Namespace) -> int:
    import signal

    from tasks import aws
    from tasks.local_aws import EmbeddedAws, seed

    settings = load_settings(ROOT, {"VECTORA_ENV": "local"})
    server = EmbeddedAws(settings, settings.local_aws_port if args.port is None else args.port)
    endpoint = server.start()
    try:
        s3 = aws.ClientFactory.local(settings.region, endpoint).s3()
        for env in AWS_ENVS:
            seed(s3, settings, env)
            s3.put_bucket_versioning(Bucket=settings.config_bucket(env), VersioningConfiguration={"Status": "Enabled"})
        print(f"embedded AWS on {endpoint}: S3 and Lambda for {', '.join(AWS_ENVS)}; Ctrl-C stops it", flush=True)
        print("in another terminal:")
        print(f"  export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local")
        print("  make promote ENV=dev && make aws-e2e ENV=dev", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.stop()
    return EXIT_PASSED


def _mask_secrets_in_output() -> None:
    """Mask the values of secret-named variables (.env and environment) in everything this process prints."""
    try:
        secrets = load_settings(ROOT).secrets
    except ToolkitError:
        return  # the command reports the broken setting itself
    sys.stdout = RedactingStream(sys.stdout, secrets)  # type: ignore[assignment]
    sys.stderr = RedactingStream(sys.stderr, secrets)  # type: ignore[assignment]


COMMANDS = {
    ("context", "new"): _context_new,
    ("context", "list"): _context_list,
    ("context", "show"): _context_show,
    ("local-e2e", None): _local_e2e,
    ("upload-config", None): _upload_config,
    ("promote", None): _promote,
    ("rollback", None): _rollback,
    ("aws-e2e", None): _aws_e2e,
    ("local-aws", None): _local_aws,
    ("report", None): _report,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code. A failing command's last line is `exit N: meaning`."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler = COMMANDS[(args.command, getattr(args, "context_command", None))]
    _mask_secrets_in_output()
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
