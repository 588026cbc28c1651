"""Render a RunRecord for people (Markdown). Pure: no AWS, no clock."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tasks.workflow import RunRecord

NA = "n/a"


def _ms(value: float | None) -> str:
    if value is None:
        return NA
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def _mb(used: int | None, size: int | None) -> str:
    return f"{used if used is not None else NA} / {size if size is not None else NA} MB"


def _size(size: int | None) -> str:
    if size is None:
        return NA
    return f"{size / 1024:.1f} KiB" if size >= 1024 else f"{size} B"


def total_seconds(record: RunRecord) -> float | None:
    if not record.finished_at:
        return None
    return (datetime.fromisoformat(record.finished_at) - datetime.fromisoformat(record.started_at)).total_seconds()


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in counts.items()) or NA


def render_markdown(record: RunRecord, purpose: str = "", template: str = "") -> str:
    """The run's report.md."""
    total = total_seconds(record)
    verdict = {
        "passed": "✅ PASSED",
        "failed": "❌ FAILED",
        "unknown": "❓ UNKNOWN",
        "interrupted": "⏹ INTERRUPTED",
        "running": "… RUNNING",
    }.get(record.status, record.status.upper())
    lines = [
        f"# E2E run {record.run_id}: {verdict}",
        "",
        "| | |",
        "|---|---|",
        f"| client_id | `{record.client_id}` |",
        f"| purpose | {purpose.replace(chr(10), ' ').replace('|', '/') or NA} |",
        f"| template | {template or NA} |",
        f"| env | {record.env} |",
        f"| target | {record.target} |",
        f"| endpoint | {record.endpoint or 'AWS (default endpoints)'} |",
        f"| config sha256 | `{record.config_sha256 or NA}` |",
        f"| started | {record.started_at} |",
        f"| finished | {record.finished_at or NA} |",
        f"| total | {f'{total:.2f} s' if total is not None else NA} |",
        "",
        "## Steps",
        "",
        "| # | step | function | status | duration | billed | init | memory used / size | request id | counts |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, step in enumerate(record.steps, start=1):
        lines.append(
            f"| {index} | {step.step} | `{step.function_name}` | {step.status} | {_ms(step.duration_ms)} | "
            f"{_ms(step.billed_duration_ms)} | {_ms(step.init_duration_ms)} | "
            f"{_mb(step.max_memory_used_mb, step.memory_size_mb)} | `{step.request_id or NA}` | "
            f"{_counts(step.counts)} |"
        )
    lines += ["", "## Outputs verified", ""]
    if record.outputs:
        lines += ["| step | S3 object | size | ok |", "|---|---|---|---|"]
        lines += [
            f"| {o.step} | `{o.uri}` | {_size(o.size)} | {'yes' if o.ok else 'NO: ' + (o.error or '')} |"
            for o in record.outputs
        ]
    else:
        lines.append("None.")
    failed = [s for s in record.steps if s.status != "passed"]
    if record.error or failed:
        lines += ["", "## What went wrong", "", record.error or failed[0].error or NA]
        for step in failed:
            if step.log_tail:
                lines += ["", f"Log tail of {step.function_name}:", "", "```", step.log_tail.rstrip(), "```"]
    return "\n".join(lines) + "\n"
