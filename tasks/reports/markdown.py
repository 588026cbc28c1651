"""Render run records for people as Markdown: one run, a summary of contexts, a comparison. Pure: no AWS, no clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.contexts.records import RunSummary, target_label
from tasks.pipeline.checks import CheckResult
from tasks.pipeline.records import RunRecord
from tasks.reports.figures import cost, funnel, total_seconds

NA = "n/a"
VERDICTS = {
    "passed": "✅ PASSED",
    "failed": "❌ FAILED",
    "unknown": "❓ UNKNOWN",
    "interrupted": "⏹ INTERRUPTED",
    "running": "… RUNNING",
}


@dataclass(frozen=True)
class About:
    """What a report says of the context beside the run itself."""

    purpose: str = ""
    template: str = ""
    full_logs: tuple[tuple[str, str], ...] = ()  # (step, path of its saved CloudWatch log)


NO_ABOUT = About()


def ms(value: float | None) -> str:
    if value is None:
        return NA
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def seconds(value: float | None) -> str:
    return NA if value is None else f"{value:.2f} s"


def memory(used: int | None, size: int | None) -> str:
    return f"{used if used is not None else NA} / {size if size is not None else NA} MB"


def size(value: int | None) -> str:
    if value is None:
        return NA
    return f"{value / 1024:.1f} KiB" if value >= 1024 else f"{value} B"


def percent(value: float | None) -> str:
    return NA if value is None else f"{value * 100:.0f} %"


def usd(value: float | None) -> str:
    """Dollars with enough decimals to show sub-cent Lambda costs (two significant digits, at least 2 decimals)."""
    if value is None:
        return NA
    if value >= 0.01 or value == 0:
        return f"${value:.2f}"
    digits = 1
    while value * 10**digits < 10:
        digits += 1
    return f"${value:.{digits}f}"


def count(value: Any) -> str:
    return NA if value is None else str(value)


def verdict(record: RunRecord) -> str:
    """PASSED, FAILED...; a run on an emulated env says so: it is never a pass on the real env."""
    said = VERDICTS.get(record.status, record.status.upper())
    return f"{said} on {where(record)}" if emulated(record) else said


def emulated(record: RunRecord) -> bool:
    """A run of dev/stage/prod's names against a custom endpoint (make local-aws, moto...), not the real env."""
    return record.env != "local" and record.endpoint is not None


def where(record: RunRecord) -> str:
    return target_label(record.env, record.endpoint if emulated(record) else None)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")


CHECK_MARKS = {"ok": "✅ ok", "warn": "⚠️ WARN", "fail": "❌ FAIL"}


def check_mark(check: CheckResult) -> str:
    """ok, WARN (a warn-level check that did not hold: amber, never green) or FAIL."""
    return CHECK_MARKS["ok" if check.ok else check.level]


def observed(check: CheckResult) -> str:
    value = check.observed
    if isinstance(value, dict):
        return ", ".join(f"{k} {NA if v is None else v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3g}"
    return NA if value is None else str(value)


def checks_tally(record: RunRecord) -> str:
    """e.g. `12/13 held, 1 warning`."""
    held = sum(1 for c in record.checks if c.ok)
    warnings = len(record.warnings)
    return f"{held}/{len(record.checks)} held" + (f", {warnings} warning{'s' * (warnings > 1)}" if warnings else "")


def checks_cell(record: RunRecord) -> str:
    """A comparison cell: the tally and each check that did not hold, with its level and what was seen."""
    if not record.checks:
        return NA
    bad = [f"{c.step}.{c.name} {check_mark(c)} ({observed(c)})" for c in record.checks if not c.ok]
    return checks_tally(record) + ("; " + "; ".join(bad) if bad else "")


def render_markdown(record: RunRecord, about: About = NO_ABOUT) -> str:
    """The run's report.md."""
    total = total_seconds(record)
    lines = [
        f"# E2E run {record.run_id}: {verdict(record)}",
        "",
        "| | |",
        "|---|---|",
        f"| client_id | `{record.client_id}` |",
        f"| purpose | {_cell(about.purpose) or NA} |",
        f"| template | {about.template or NA} |",
        f"| env | {record.env} |",
        f"| target | {record.target} |",
        f"| endpoint | {record.endpoint or 'AWS (default endpoints)'} |",
        f"| config sha256 | `{record.config_sha256 or NA}` |",
        f"| started | {record.started_at} |",
        f"| finished | {record.finished_at or NA} |",
        f"| total | {seconds(total)} |",
    ]
    if record.resumed_from:
        lines.append(f"| resumed from | {record.resumed_from} |")
    lines += [f"| note | {_cell(note)} |" for note in record.notes]
    lines += ["", "## Steps", ""]
    lines += [
        "| # | step | function | status | duration | billed | init | memory used / size | request id |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for index, step in enumerate(record.steps, start=1):
        lines.append(
            f"| {index} | {step.step} | `{step.function_name}` | {step.status} | {ms(step.duration_ms)} | "
            f"{ms(step.billed_duration_ms)} | {ms(step.init_duration_ms)} | "
            f"{memory(step.max_memory_used_mb, step.memory_size_mb)} | `{step.request_id or NA}` |"
        )
    lines += ["", "## Funnel", "", "| stage | items | of previous | of ingested |", "|---|---|---|---|"]
    lines += [
        f"| {s.label} | {count(s.count)} | {percent(s.of_previous)} | {percent(s.of_first)} |" for s in funnel(record)
    ]
    lines += ["", "## Outputs verified", ""]
    if record.outputs:
        lines += ["| step | S3 object | size | ok |", "|---|---|---|---|"]
        lines += [
            f"| {o.step} | `{o.uri}` | {size(o.size)} | {'yes' if o.ok else 'NO: ' + _cell(o.error or '')} |"
            for o in record.outputs
        ]
    else:
        lines.append("None.")
    lines += ["", "## Checks", ""]
    if record.checks:
        lines += [f"Data-level checks: {checks_tally(record)} (thresholds from `{record.expectations}`).", ""]
        lines += ["| step | check | observed | expected | level | result |", "|---|---|---|---|---|---|"]
        lines += [
            f"| {c.step} | {c.name} | {_cell(observed(c))} | {_cell(c.expected)} | {c.level} | {check_mark(c)}"
            f"{': ' + _cell(c.message) if c.message else ''} |"
            for c in record.checks
        ]
    else:
        lines.append("None ran.")
    estimate = cost(record, record.region or "eu-west-3")
    lines += ["", "## Estimated cost", "", "| step | architecture | GB-seconds | cost |", "|---|---|---|---|"]
    lines += [
        f"| {c.step} | {c.architecture} | {NA if c.gb_seconds is None else f'{c.gb_seconds:.4f}'} | {usd(c.usd)} |"
        for c in estimate.steps
    ]
    lines += [f"| **total** | | | **{usd(estimate.usd)}** |", "", estimate.note]
    failed = [s for s in record.steps if s.status != "passed"]
    if record.error or failed:
        lines += ["", "## What went wrong", "", record.error or failed[0].error or NA]
        for step in failed:
            if step.log_tail:
                lines += ["", f"Log tail of `{step.function_name}`:", "", "```", step.log_tail.rstrip(), "```"]
        for name, path in about.full_logs:
            lines += ["", f"Full CloudWatch log of {name}: `{path}`"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ContextRow:
    """One line of the summary of all contexts."""

    client_id: str
    purpose: str
    status: str
    envs: dict[str, str]  # status of the last run per target: local, dev, dev(emulated)...
    last: RunSummary | None


def render_summary(rows: list[ContextRow]) -> str:
    """A Markdown table of every context: status per env, last run, verdict, total time, cost."""
    lines = [
        "| client_id | purpose | status per env | last run | verdict | total | cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        envs = ", ".join(f"{env}: {status}" for env, status in sorted(row.envs.items())) or NA
        last = row.last
        lines.append(
            f"| `{row.client_id}` | {_cell(row.purpose)[:60]} | {envs} | {last.run_id if last else NA} | "
            f"{VERDICTS.get(last.status, last.status.upper()) if last else NA} | "
            f"{seconds(last.total_seconds) if last else NA} | {usd(last.cost_usd) if last else NA} |"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Column:
    """One run in a comparison, and the numbers compared."""

    record: RunRecord
    values: dict[str, float | None]


STEP_ORDER = ("ingest", "normalize-score", "newsletter")


def comparison(records: list[RunRecord]) -> tuple[list[str], list[Column]]:
    """Row labels and one column per run: per-step durations, funnel counts and rates, total time, cost."""
    labels = [f"{step} duration (ms)" for step in STEP_ORDER]
    labels += [f"{s.label} (items)" for s in funnel(records[0])] if records else []
    labels += ["matched / normalized (%)", "selected / ingested (%)", "total (s)", "cost (USD)"]
    columns = []
    for record in records:
        durations = {s.step: s.duration_ms for s in record.steps}
        stages = funnel(record)
        values: dict[str, float | None] = {f"{step} duration (ms)": durations.get(step) for step in STEP_ORDER}
        values |= {f"{s.label} (items)": s.count for s in stages}
        matched, selected = stages[3], stages[4]
        values["matched / normalized (%)"] = None if matched.of_previous is None else matched.of_previous * 100
        values["selected / ingested (%)"] = None if selected.of_first is None else selected.of_first * 100
        values["total (s)"] = total_seconds(record)
        values["cost (USD)"] = cost(record, record.region or "eu-west-3").usd
        columns.append(Column(record, values))
    return labels, columns


def number(value: float | None, label: str) -> str:
    if value is None:
        return NA
    if label.startswith("cost"):
        return usd(value)
    return f"{value:.0f}" if label.endswith("(items)") or label.endswith("(ms)") else f"{value:.1f}"


def delta(value: float | None, base: float | None, label: str) -> str:
    if value is None or base is None:
        return ""
    change = value - base
    return f" ({'+' if change >= 0 else '-'}{number(abs(change), label)})"


def render_compare(records: list[RunRecord]) -> str:
    """Side by side, the latest run of each context, with deltas against the first."""
    labels, columns = comparison(records)
    head = "| | " + " | ".join(f"`{c.record.client_id}`" for c in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    lines.append("| run | " + " | ".join(c.record.run_id for c in columns) + " |")
    lines.append("| env | " + " | ".join(where(c.record) for c in columns) + " |")
    lines.append("| payload | " + " | ".join(f"`{_cell(c.record.payload)}`" for c in columns) + " |")
    lines.append("| verdict | " + " | ".join(verdict(c.record) for c in columns) + " |")
    lines.append("| checks | " + " | ".join(_cell(checks_cell(c.record)) for c in columns) + " |")
    for label in labels:
        base = columns[0].values.get(label) if columns else None
        cells = [
            number(c.values.get(label), label) + (delta(c.values.get(label), base, label) if i else "")
            for i, c in enumerate(columns)
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
