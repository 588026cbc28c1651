"""The workflow: the ordered steps, what "a step passed" means, and the runner that stops at the first failure.

Pure: the runner gets an invoker, an output verifier and a clock, so tests drive it without AWS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from tasks import checks
from tasks.checks import Chain, CheckResult, Expectations
from tasks.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PASSED, EXIT_UNKNOWN, OutcomeUnknown, ToolkitError
from tasks.lambda_log import parse_report
from tasks.settings import STEPS

SCHEMA_VERSION = 2  # 2: checks, notes, expectations and each step's own event
DRY_RUN_NOTE = "dry run (event dry_run: true): ingest writes nothing, so output, data and chain checks were skipped"
ERROR_STATUSES = {"error", "failed", "failure"}
# The body fields that tell a step's story (the funnel), looked up in the body and its "statistics".
KEY_COUNTS = {
    "ingest": ("items_ingested", "items_final"),
    "normalize-score": ("items_input", "items_normalized", "items_matched", "items_scored"),
    "newsletter": ("items_selected",),
}


@dataclass(frozen=True)
class Invocation:
    """One Invoke call's answer, as received."""

    function_name: str
    status_code: int
    function_error: str | None
    payload: Any
    log_tail: str
    request_id: str | None
    executed_version: str | None
    attempts: int = 1


@dataclass(frozen=True)
class OutputCheck:
    """One S3 object a step must have written, as found."""

    step: str
    uri: str
    size: int | None
    ok: bool
    last_modified: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class StepResult:
    """One invoked step: the answer's verdict and the figures of its REPORT line."""

    step: str
    function_name: str
    status: str
    started_at: str
    finished_at: str | None = None
    wall_ms: float | None = None
    duration_ms: float | None = None
    billed_duration_ms: float | None = None
    init_duration_ms: float | None = None
    memory_size_mb: int | None = None
    max_memory_used_mb: int | None = None
    request_id: str | None = None
    function_error: str | None = None
    status_code: int | None = None
    body_status: str | None = None
    error: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    log_tail: str | None = None
    event: dict[str, Any] | None = None  # set when this step's event differs from the run's (target_date)


@dataclass(frozen=True)
class RunRecord:
    """Everything a run did, as written to run.json (keys with unknown values are null, never absent)."""

    run_id: str
    client_id: str
    env: str
    target: str
    endpoint: str | None
    status: str
    started_at: str
    finished_at: str | None
    config_sha256: str | None
    event: dict[str, Any]
    steps: tuple[StepResult, ...] = ()
    outputs: tuple[OutputCheck, ...] = ()
    error: str | None = None
    exit_code: int | None = None
    functions: dict[str, Any] = field(default_factory=dict)
    resumed_from: str | None = None
    region: str | None = None
    checks: tuple[CheckResult, ...] = ()
    expectations: str | None = None  # where the checks' thresholds came from
    notes: tuple[str, ...] = ()  # what a reader must know (a dry run, replayed sources...)
    schema_version: int = SCHEMA_VERSION

    @property
    def warnings(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.warned)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> RunRecord:
        """Read a run.json back (keys this version does not know are ignored, missing ones take defaults)."""
        fields = {k: v for k, v in document.items() if k in cls.__dataclass_fields__}
        fields["steps"] = tuple(_known(StepResult, s) for s in document.get("steps") or ())
        fields["outputs"] = tuple(_known(OutputCheck, o) for o in document.get("outputs") or ())
        fields["checks"] = tuple(_known(CheckResult, c) for c in document.get("checks") or ())
        fields["notes"] = tuple(document.get("notes") or ())
        return cls(**fields)


def _known(kind: Any, document: dict[str, Any]) -> Any:
    return kind(**{k: v for k, v in document.items() if k in kind.__dataclass_fields__})


def _body(payload: Any) -> Any:
    body = payload.get("body") if isinstance(payload, dict) else None
    if isinstance(body, str):
        try:
            return json.loads(body)
        except ValueError:
            return body
    return body


def counts(step: str, body: Any) -> dict[str, Any]:
    """The step's funnel counts found in its answer body."""
    if not isinstance(body, dict):
        return {}
    stats: dict[str, Any] = body["statistics"] if isinstance(body.get("statistics"), dict) else {}
    return {key: body.get(key, stats.get(key)) for key in KEY_COUNTS.get(step, ()) if key in body or key in stats}


def _reason(body: Any) -> str:
    """An error answer's `error` and `message` (the real 500 bodies hold both), or the body itself."""
    if not isinstance(body, dict):
        return str(body)
    parts = [str(body[key]) for key in ("error", "message") if body.get(key)]
    return ": ".join(parts) or "no detail"


def judge(step: str, invocation: Invocation) -> tuple[str | None, int | None, str | None]:
    """(error or None, payload statusCode, body status) for an Invoke answer, by the rules of README "A step passed"."""
    payload = invocation.payload
    name = invocation.function_name
    if invocation.function_error:
        detail = ""
        if isinstance(payload, dict):
            detail = f": {payload.get('errorType', '')}: {payload.get('errorMessage', '')}".rstrip(": ")
        return f"{name} failed with FunctionError {invocation.function_error}{detail}", None, None
    if not isinstance(payload, dict) or "statusCode" not in payload:
        return f"{name} answered without a statusCode: {str(payload)[:200]}", None, None
    status_code = payload["statusCode"]
    body = _body(payload)
    body_status = body.get("status") if isinstance(body, dict) else None
    if status_code != 200:
        return f"{name} answered statusCode {status_code}: {_reason(body)}", status_code, body_status
    if body_status in ERROR_STATUSES:
        return f"{name} reported status {body_status!r}: {_reason(body)}", status_code, body_status
    if step == "newsletter" and body_status == "no_items":
        return f"{name} found nothing to publish (status 'no_items')", status_code, body_status
    return None, status_code, body_status


def step_result(step: str, invocation: Invocation, started: datetime, finished: datetime) -> StepResult:
    """The StepResult of an answered invocation (before its outputs are checked)."""
    error, status_code, body_status = judge(step, invocation)
    report = parse_report(invocation.log_tail)
    body = _body(invocation.payload)
    return StepResult(
        step=step,
        function_name=invocation.function_name,
        status="failed" if error else "passed",
        started_at=started.isoformat(),
        finished_at=finished.isoformat(),
        wall_ms=round((finished - started).total_seconds() * 1000, 1),
        duration_ms=report.duration_ms,
        billed_duration_ms=report.billed_duration_ms,
        init_duration_ms=report.init_duration_ms,
        memory_size_mb=report.memory_size_mb,
        max_memory_used_mb=report.max_memory_used_mb,
        request_id=invocation.request_id,
        function_error=invocation.function_error,
        status_code=status_code,
        body_status=body_status,
        error=error,
        counts=counts(step, body),
        body=body if isinstance(body, dict) else None,
        log_tail=invocation.log_tail or None,
    )


Invoker = Callable[[str, str, dict[str, Any]], Invocation]
Verifier = Callable[[StepResult, datetime], list[OutputCheck]]
Reader = Callable[[str], bytes]


def file_name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


@dataclass
class Runner:
    """Runs steps in order, holds each to its outputs, its data and the chain; stops at the first failure.

    A step passes when its answer says success, each output it must write exists and is fresh (verify), and the
    data-level checks at level fail hold on its answer and its parsed outputs (read); see tasks/checks.py.
    """

    invoke: Invoker
    verify: Verifier
    read: Reader
    clock: Callable[[], datetime]
    expectations: Expectations = checks.DEFAULTS
    on_step_start: Callable[[int, str, str], None] = lambda index, step, name: None
    on_step_end: Callable[[int, StepResult, list[CheckResult]], None] = lambda index, result, found: None

    def run(
        self,
        record: RunRecord,
        functions: dict[str, str],
        steps: tuple[str, ...] = STEPS,
        earlier: tuple[StepResult, ...] = (),
    ) -> RunRecord:
        """Invoke each step's function; return the finished record. earlier: passed steps a resumed run reuses."""
        dry_run = bool(record.event.get("dry_run"))
        chain = Chain()
        for result in earlier:
            chain = checks.chain_after(result.step, result.body or {}, chain)
        results: list[StepResult] = []
        outputs: list[OutputCheck] = []
        found: list[CheckResult] = []
        status, error, exit_code = "passed", None, EXIT_PASSED
        for index, step in enumerate(steps, start=1):
            name = functions[step]
            self.on_step_start(index, step, name)
            started = self.clock()
            event = record.event
            if step == "newsletter" and not dry_run:
                event = checks.newsletter_event(record.event, chain, started.strftime("%Y/%m/%d"))
            step_checks: list[CheckResult] = []
            try:
                result = step_result(step, self.invoke(step, name, event), started, self.clock())
                if event != record.event:
                    result = replace(result, event=event)
                if result.status == "passed" and not dry_run:
                    result, step_outputs, step_checks = self._hold(result, started, chain)
                    outputs += step_outputs
                    chain = checks.chain_after(step, result.body or {}, chain)
            except KeyboardInterrupt:
                result = StepResult(
                    step,
                    name,
                    "interrupted",
                    started.isoformat(),
                    self.clock().isoformat(),
                    error=f"interrupted while waiting for {name}; the Lambda may still complete",
                )
                status, exit_code = "interrupted", EXIT_INTERRUPTED
            except OutcomeUnknown as err:
                result = StepResult(
                    step, name, "unknown", started.isoformat(), self.clock().isoformat(), error=str(err)
                )
                status, exit_code = "unknown", EXIT_UNKNOWN
            except ToolkitError as err:
                result = StepResult(step, name, "failed", started.isoformat(), self.clock().isoformat(), error=str(err))
                status, exit_code = "failed", err.exit_code
            results.append(result)
            found += step_checks
            self.on_step_end(index, result, step_checks)
            if result.status == "failed" and status == "passed":
                status, exit_code = "failed", EXIT_FAILED
            if status != "passed":
                error = result.error
                break
        return replace(
            record,
            status=status,
            finished_at=self.clock().isoformat(),
            steps=tuple(results),
            outputs=tuple(outputs),
            checks=tuple(found),
            expectations=self.expectations.source,
            notes=(*record.notes, DRY_RUN_NOTE) if dry_run else record.notes,
            error=error,
            exit_code=exit_code,
        )

    def _hold(
        self, result: StepResult, started: datetime, chain: Chain
    ) -> tuple[StepResult, list[OutputCheck], list[CheckResult]]:
        """Verify the outputs of an answered step, then its data; the result fails on the first that does not hold."""
        outputs = self.verify(result, started)
        bad = [o for o in outputs if not o.ok]
        if bad:
            return replace(result, status="failed", error=f"output check failed: {bad[0].error}"), outputs, []
        files = {file_name(o.uri): self.read(o.uri) for o in outputs}
        found = checks.check_step(result.step, result.body or {}, files, chain, self.expectations)
        failed = [c for c in found if c.failed]
        if failed:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            error = f"data check {failed[0].name} failed: {failed[0].message}{more}"
            result = replace(result, status="failed", error=error)
        return result, outputs, found
