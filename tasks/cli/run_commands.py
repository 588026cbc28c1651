"""local-e2e, aws-e2e (one client or many) and local-aws."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from typing import Any

from tasks.cli.common import (
    ROOT,
    client_factory,
    confirm_prod,
    context_store,
    env_settings,
    finish_run,
    latest,
    print_progress,
    print_step,
)
from tasks.cli.context_commands import create_context
from tasks.contexts.store import Context, utc_now, validate_client_id
from tasks.errors import EXIT_INTERRUPTED, EXIT_MEANINGS, EXIT_PASSED, ToolkitError, UsageError
from tasks.interface import for_interface
from tasks.json_documents import parse_json
from tasks.settings import STEPS, Settings, load_settings
from tasks.signals import interrupted_code

AWS_ENVS = ("dev", "stage", "prod", "local")


def parse_payload(text: str | None, client_id: str | None) -> dict[str, Any]:
    """Extra event fields from --payload (a JSON object); they may not change the client_id (None: may not set it)."""
    if not text:
        return {}
    try:
        payload = parse_json(text)
    except ValueError as err:
        raise UsageError(
            f"--payload is not JSON ({getattr(err, 'msg', err)}): give an object, e.g. '{{\"period_days\": 7}}'"
        ) from err
    if not isinstance(payload, dict):
        raise UsageError("--payload must be a JSON object, e.g. '{\"period_days\": 7}'")
    if "client_id" in payload and payload["client_id"] != client_id:
        raise UsageError("--payload may not change the client_id: use --client-id")
    return payload


def local_e2e_command(args: argparse.Namespace) -> int:
    from tasks.flows.local_e2e import LocalE2E
    from tasks.local.preflight import check_local_setup

    settings = load_settings(ROOT, {"VECTORA_ENV": "local"})
    check_local_setup(settings)  # before a context (and its client_id) is used
    flow = LocalE2E(settings, context_store(settings), on_step_end=print_step)
    if args.client_id is not None:
        context = flow.store.load(validate_client_id(args.client_id))
        payload = parse_payload(args.payload, context.client_id)
    else:
        payload = parse_payload(args.payload, None)
        context = create_context(settings, args.template, args.purpose)
    print(f"context {context.client_id}: running the workflow on the embedded AWS", flush=True)
    return finish_run(context, flow.run(context, payload))


def _promotion_time(env: str, endpoint: str | None) -> Callable[[Context], str | None]:
    """When each context was last promoted to env on endpoint (an emulated promotion never counts for AWS)."""
    return lambda c: promotion.at if (promotion := c.target(env, endpoint).promotion) else None


def aws_e2e_command(args: argparse.Namespace) -> int:
    from tasks.cli.config_commands import pull_context
    from tasks.flows.parallel import run_bounded, worst

    settings = env_settings(args)
    store = context_store(settings)
    named = list(dict.fromkeys(args.client_ids or ([args.client_id] if args.client_id is not None else [])))
    missing = [c for c in named if not store.exists(validate_client_id(c))]
    if missing and args.dry_run:
        raise UsageError(
            f"no context {missing[0]} here, and a dry run makes no AWS call: `make pull CLIENT_ID={missing[0]}` "
            "fetches it from the env's S3"
        )
    for client_id in missing:  # a client someone else promoted: pull its config into a context, then run it
        pulled = pull_context(settings, client_id)
        print(f"no context {client_id} here: pulled {pulled.pulled.uri if pulled.pulled else ''}", flush=True)
    if named:
        contexts = [store.load(c) for c in named]
    else:
        promoted = _promotion_time(settings.env, settings.endpoint("s3"))
        contexts = [latest(store.list(), promoted, f"promoted to {settings.env}")]
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
    confirm_prod(settings, args.yes, "run the pipeline for " + ", ".join(c.client_id for c in contexts))
    factory = client_factory(settings)
    if len(contexts) == 1:
        return _run_on_env(settings, factory, contexts[0], args, payloads[contexts[0].client_id], "")
    parallel = max(1, min(args.parallel, len(contexts)))
    print(f"{len(contexts)} clients on {settings.env}, {parallel} at a time", flush=True)
    codes = run_bounded(
        [
            functools.partial(_run_on_env, settings, factory, c, args, payloads[c.client_id], f"[{c.client_id}] ")
            for c in contexts
        ],
        parallel,
    )
    print("summary:")
    for context, code in zip(contexts, codes, strict=True):
        print(f"  {context.client_id:<22} exit {code}: {EXIT_MEANINGS.get(code, 'failed')}")
    return worst(codes)


def _e2e_flow(settings: Settings, factory: Any, prefix: str) -> Any:
    from tasks.flows.aws_e2e import AwsE2E

    return AwsE2E(
        settings,
        context_store(settings),
        factory,
        utc_now,
        lambda index, total, result, found: print_step(index, total, result, found, prefix),
        lambda step, elapsed: print_progress(step, elapsed, prefix),
    )


def _run_on_env(
    settings: Settings, factory: Any, context: Context, args: argparse.Namespace, payload: dict[str, Any], prefix: str
) -> int:
    """Run one context's workflow on the env; return its exit code (errors are printed, not raised, with prefix)."""
    try:
        flow = _e2e_flow(settings, factory, prefix)
        plan = flow.plan(context, args.start, payload)
        print(f"{prefix}context {context.client_id}: running the workflow on {flow.target()}", flush=True)
        if plan.resumed_from:
            earlier = ", ".join(step for step in STEPS if step not in plan.steps)
            print(f"{prefix}resumed from run {plan.resumed_from}: {earlier} not invoked again, outputs re-verified")
        record = flow.run(context, plan, force=args.force)
        if args.publish or settings.publish_runs:
            from tasks.aws.published_runs import publish
            from tasks.contexts.runs import RunFolder

            where = publish(factory.s3(), settings, record, RunFolder(context.runs_dir / record.run_id))
            print(f"{prefix}published: {where}")
        return finish_run(context, record, prefix)
    except ToolkitError as err:
        if not prefix:
            raise
        print(f"{prefix}error: {for_interface(str(err))}", file=sys.stderr, flush=True)
        return err.exit_code


def local_aws_command(args: argparse.Namespace) -> int:
    import time

    from tasks.aws import clients as aws
    from tasks.local.server import EmbeddedAws, seed

    settings = load_settings(ROOT, {"VECTORA_ENV": "local"})
    server = EmbeddedAws(settings, settings.local_aws_port if args.port is None else args.port, AWS_ENVS)
    endpoint = server.start()
    try:
        s3 = aws.ClientFactory.local(settings.region, endpoint).s3()
        for env in AWS_ENVS:
            seed(s3, settings, env)
            s3.put_bucket_versioning(Bucket=settings.config_bucket(env), VersioningConfiguration={"Status": "Enabled"})
        print(
            f"embedded AWS on {endpoint}: S3, Lambda and Step Functions for {', '.join(AWS_ENVS)}; Ctrl-C stops it",
            flush=True,
        )
        print("in another terminal:")
        print(f"  export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local")
        print(for_interface("  `make promote ENV=dev` then `make aws-e2e ENV=dev`"), flush=True)
        while True:  # not signal.pause(): with the server's threads, Ctrl-C may reach another thread and never wake it
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.stop()
    code = interrupted_code()  # Ctrl-C is how it is meant to stop (0); SIGTERM says so (143), as every command does
    return EXIT_PASSED if code == EXIT_INTERRUPTED else code
