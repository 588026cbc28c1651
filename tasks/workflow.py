"""The workflow: the ordered steps, what "a step passed" means, and the runner that stops at the first failure.

Pure: the runner gets an invoker, an output verifier and a clock, so tests drive it without AWS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from tasks.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PASSED, EXIT_UNKNOWN, OutcomeUnknown, ToolkitError
from tasks.lambda_log import parse_report
from tasks.settings import STEPS

SCHEMA_VERSION = 1
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
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> RunRecord:
        """Read a run.json back (keys this version does not know are ignored, missing ones take defaults)."""
        fields = {k: v for k, v in document.items() if k in cls.__dataclass_fields__}
        fields["steps"] = tuple(_known(StepResult, s) for s in document.get("steps") or ())
        fields["outputs"] = tuple(_known(OutputCheck, o) for o in document.get("outputs") or ())
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
    stats = body.get("statistics") if isinstance(body.get("statistics"), dict) else {}
    return {key: body.get(key, stats.get(key)) for key in KEY_COUNTS.get(step, ()) if key in body or key in stats}


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
        reason = body.get("error") or body.get("message") if isinstance(body, dict) else body
        return f"{name} answered statusCode {status_code}: {reason}", status_code, body_status
    if body_status in ERROR_STATUSES:
        reason = body.get("error") or body.get("message") or "no detail"
        return f"{name} reported status {body_status!r}: {reason}", status_code, body_status
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


@dataclass
class Runner:
    """Runs steps in order, verifies each one's outputs, stops at the first failure; reports each step as it ends."""

    invoke: Invoker
    verify: Verifier
    clock: Callable[[], datetime]
    on_step_start: Callable[[int, str, str], None] = lambda index, step, name: None
    on_step_end: Callable[[int, StepResult], None] = lambda index, result: None

    def run(self, record: RunRecord, functions: dict[str, str], steps: tuple[str, ...] = STEPS) -> RunRecord:
        """Invoke each step's function with the record's event; return the finished record."""
        results: list[StepResult] = []
        outputs: list[OutputCheck] = []
        status, error, exit_code = "passed", None, EXIT_PASSED
        for index, step in enumerate(steps, start=1):
            name = functions[step]
            self.on_step_start(index, step, name)
            started = self.clock()
            try:
                result = step_result(step, self.invoke(step, name, record.event), started, self.clock())
                if result.status == "passed":
                    checks = self.verify(result, started)
                    outputs += checks
                    bad = [c for c in checks if not c.ok]
                    if bad:
                        result = replace(result, status="failed", error=f"output check failed: {bad[0].error}")
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
            self.on_step_end(index, result)
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
            error=error,
            exit_code=exit_code,
        )
