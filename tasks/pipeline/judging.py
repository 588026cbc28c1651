"""What "a step passed" means for an Invoke answer, and a step's result with its funnel counts and REPORT figures.

Pure: README "What a step passed means" lists the rules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tasks.json_documents import parse_json
from tasks.pipeline.records import Invocation, StepResult
from tasks.pipeline.report_line import parse_report

ERROR_STATUSES = {"error", "failed", "failure"}
# The body fields that tell a step's story (the funnel), looked up in the body and its "statistics".
KEY_COUNTS = {
    "ingest": ("items_ingested", "items_final"),
    "normalize-score": ("items_input", "items_normalized", "items_matched", "items_scored"),
    "newsletter": ("items_selected",),
}


def _body(payload: Any) -> Any:
    body = payload.get("body") if isinstance(payload, dict) else None
    if isinstance(body, str):
        try:
            return parse_json(body, allow_nan=True)
        except ValueError:  # not JSON, or nested too deeply: judged as the text it is
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
