"""The AWS E2E flow: invoke an env's three Lambdas in order, safely, verify their outputs, record the run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.aws import client_configs, outputs
from tasks.aws import clients as aws
from tasks.contexts.client_config import sha256
from tasks.contexts.files import read_json, write_atomic
from tasks.contexts.runs import RecordedRun, new_record, recorded_run
from tasks.contexts.store import Context, ContextStore
from tasks.errors import StepFailed, UsageError
from tasks.masking import redact, secret_forms
from tasks.pipeline.checks import CheckResult, Expectations, load_expectations
from tasks.pipeline.records import Invocation, OutputCheck, RunRecord, StepResult
from tasks.pipeline.runner import Runner
from tasks.settings import STEPS, Settings
from tasks.visible import visible

FOREIGN_NOTE = "config not this context's"


@dataclass(frozen=True)
class Plan:
    """What a run would touch: functions, events, buckets and keys. A dry run prints it and does nothing else."""

    client_id: str
    env: str
    steps: tuple[str, ...]
    functions: dict[str, str]
    event: dict[str, Any]
    config_uri: str
    output_prefixes: tuple[str, ...]
    endpoint: str | None
    resumed_from: str | None


def steps_from(start: str | None) -> tuple[str, ...]:
    if start is None:
        return STEPS
    if start not in STEPS:
        raise UsageError(f"unknown step {start!r} for --from: use one of {', '.join(STEPS)}")
    return STEPS[STEPS.index(start) :]


@contextmanager
def heartbeat(interval: float, tick: Callable[[float], None]) -> Iterator[None]:
    """Call tick(elapsed seconds) every interval while the block runs, so a long step does not look hung."""
    done = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not done.wait(interval):
            tick(time.monotonic() - started)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class AwsE2E:
    """Runs the workflow on one env for one context, through a ClientFactory (real AWS or a custom endpoint).

    Planning needs no factory (a dry run passes None); running does.
    """

    def __init__(
        self,
        settings: Settings,
        store: ContextStore,
        factory: aws.ClientFactory | None,
        clock: Callable[[], datetime],
        on_step_end: Callable[[int, int, StepResult, list[CheckResult]], None] = lambda i, n, r, c: None,
        on_progress: Callable[[str, float], None] = lambda step, elapsed: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.store = store
        self.factory = factory
        self.clock = clock
        self.on_step_end = on_step_end
        self.on_progress = on_progress
        self.sleep = sleep

    @property
    def clients(self) -> aws.ClientFactory:
        """The client factory; only a dry run goes without one."""
        if self.factory is None:
            raise AssertionError("running needs a client factory")
        return self.factory

    def plan(self, context: Context, start: str | None = None, payload: dict[str, Any] | None = None) -> Plan:
        settings, client_id = self.settings, context.client_id
        steps = steps_from(start)
        previous = self._previous_run(context) if start and start != STEPS[0] else None
        return Plan(
            client_id=client_id,
            env=settings.env,
            steps=steps,
            functions={step: settings.function_name(step) for step in steps},
            event={"client_id": client_id, **(payload or {})},
            config_uri=f"s3://{settings.config_bucket()}/{settings.config_key(client_id)}",
            output_prefixes=(
                f"s3://{settings.data_bucket()}/ingested/{client_id}/",
                f"s3://{settings.data_bucket()}/curated/{client_id}/",
                f"s3://{settings.newsletters_bucket()}/{client_id}/",
            ),
            endpoint=settings.custom_endpoint,
            resumed_from=previous["run_id"] if previous else None,
        )

    def _previous_run(self, context: Context) -> dict[str, Any]:
        last = context.target(self.settings.env, self.settings.custom_endpoint).last_run
        path = context.runs_dir / (last.run_id if last else "-") / "run.json"
        if not last or not path.is_file():
            raise UsageError(f"--from needs an earlier run of {context.client_id} on {self.settings.env}; none found")
        return read_json(path)

    def target(self) -> str:
        endpoint = self.settings.custom_endpoint
        if endpoint:
            return f"custom endpoint {endpoint} (not a pass on the real {self.settings.env})"
        return f"AWS {self.settings.env} ({self.settings.region})"

    def run(self, context: Context, plan: Plan, force: bool = False) -> RunRecord:
        """Run plan for context under its run lock; the run is recorded whatever happens once it starts.

        The config in S3 must be this context's (`not_this_contexts`): else nothing is invoked, unless forced.
        """
        expectations = load_expectations(context.expectations_path)
        s3 = self.clients.s3()
        bucket, key = outputs.split_uri(plan.config_uri)
        remote = client_configs.read_remote(s3, bucket, key, self.settings.max_config_bytes)
        if not remote.exists:
            raise UsageError(f"{plan.config_uri} does not exist: promote the context first (`make promote`)")
        foreign = self.not_this_contexts(context, plan, remote)
        if foreign and not force:
            raise UsageError(
                f"{foreign}: nothing invoked. To run that config, pull it into a new context (move "
                f"contexts/{context.client_id} away, then `make pull CLIENT_ID={context.client_id} ENV={plan.env}`), "
                f'or run this context on it anyway with FORCE=1 (recorded as "{FOREIGN_NOTE}")'
            )
        record = new_record(
            context,
            plan.env,
            self.target(),
            plan.endpoint,
            plan.event,
            self.clock(),
            self.settings.region,
            remote.sha256,
            resumed_from=plan.resumed_from,
            notes=(f"{FOREIGN_NOTE} (forced): {foreign}",) if foreign else (),
        )
        with recorded_run(self.store, context, record, self.clock, self.settings.secrets) as run:
            self._run(run, s3, context, plan, expectations)
        return run.record

    def not_this_contexts(self, context: Context, plan: Plan, remote: client_configs.RemoteObject) -> str | None:
        """What S3 holds, when it is not a config this context promoted, pulled or tested there; else None."""
        known = context.configs_known(plan.env, self.settings.endpoint("s3"))
        if context.config_path.is_file():
            known.add(sha256(context.config_path.read_bytes()))
        if remote.sha256 in known:
            return None
        modified = remote.last_modified.isoformat() if remote.last_modified else "unknown"
        return (
            f"{plan.config_uri} holds a config this context did not promote, pull or test (S3 version "
            f"{remote.version_id or 'none'}, last modified {modified}, sha256 {remote.sha256})"
        )

    def _run(self, run: RecordedRun, s3: Any, context: Context, plan: Plan, expectations: Expectations) -> None:
        """Read the functions' configurations, re-verify what a resumed run reuses, invoke the steps."""
        settings = self.settings
        configs = self._configurations(plan)
        run.record = record = replace(run.record, functions={s: aws.tested_version(c) for s, c in configs.items()})
        deadline = time.monotonic() + settings.e2e_timeout
        reader = outputs.OutputReader(s3)
        check = outputs.verifier(reader, settings, plan.env, plan.client_id, self.clock)
        earlier, reused = self._reverify(reader, context, plan) if plan.resumed_from else ((), [])
        if any(not c.ok for c in reused):
            bad = next(c for c in reused if not c.ok)
            run.record = replace(
                record,
                status="failed",
                finished_at=self.clock().isoformat(),
                outputs=tuple(reused),
                error=f"output of an earlier step is no longer valid: {bad.error}",
                exit_code=1,
            )
            return

        def invoke(step: str, name: str, event: dict[str, Any]) -> Invocation:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepFailed(
                    f"{name} not invoked: the run-wide deadline (E2E_TIMEOUT={settings.e2e_timeout:.0f} s) passed"
                )
            timeout = (configs[step] or {}).get("Timeout")
            read_timeout = timeout + aws.INVOKE_MARGIN_S if timeout else settings.lambda_read_timeout
            client = self.clients.lambda_(read_timeout=min(read_timeout, left))
            with heartbeat(settings.progress_interval, lambda elapsed: self.on_progress(step, elapsed)):
                return aws.invoke(client, name, event, sleep=self.sleep)

        runner = Runner(
            invoke=invoke,
            verify=check,
            read=reader,
            clock=self.clock,
            expectations=expectations,
            on_step_end=lambda index, result, found: self.on_step_end(index, len(plan.steps), result, found),
        )
        record = runner.run(record, plan.functions, plan.steps, earlier)
        run.record = replace(record, outputs=(*reused, *record.outputs))
        reader.save(record.outputs, run.folder.outputs)  # what this run's steps wrote (read once already)
        self._save_failed_logs(record, run.folder.logs)

    def _configurations(self, plan: Plan) -> dict[str, dict[str, Any] | None]:
        """Each function's configuration; None where reading it is not allowed (the default read timeout applies)."""
        return aws.function_configurations(self.clients.lambda_(), plan.functions, plan.env, none_if_denied=True)

    def _reverify(
        self, reader: outputs.OutputReader, context: Context, plan: Plan
    ) -> tuple[tuple[StepResult, ...], list[OutputCheck]]:
        """The passed steps a resumed run does not invoke, and their outputs checked again."""
        previous = RunRecord.from_json(read_json(context.runs_dir / str(plan.resumed_from) / "run.json"))
        done = {s.step: s for s in previous.steps if s.status == "passed"}
        checks = []
        earlier = []
        for step in STEPS[: STEPS.index(plan.steps[0])]:
            if step not in done:
                raise UsageError(f"--from {plan.steps[0]}: step {step} did not pass in run {plan.resumed_from}")
            result = done[step]
            earlier.append(result)
            started = datetime.fromisoformat(result.started_at)
            finished = datetime.fromisoformat(result.finished_at or result.started_at)
            for uris in outputs.expected_outputs(self.settings, plan.env, plan.client_id, result, started, finished):
                checks.append(reader.check(step, uris, started))
        return tuple(earlier), checks

    def _save_failed_logs(self, record: RunRecord, folder: Path) -> None:
        """Save the full CloudWatch log of each failed step that has a request id (best effort)."""
        for step in record.steps:
            if step.status == "passed" or not step.request_id:
                continue
            text = aws.fetch_log(
                self.clients, step.function_name, step.request_id, datetime.fromisoformat(step.started_at)
            )
            if text:
                folder.mkdir(parents=True, exist_ok=True)
                masked = visible(redact(text, secret_forms(self.settings.secrets)))
                write_atomic(folder / f"{step.step}.log", masked.encode("utf-8"))
