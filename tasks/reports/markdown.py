"""Render run records for people as Markdown: one run, a summary of contexts, a comparison. Pure: no AWS, no clock."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.contexts.records import RunSummary
from tasks.pipeline.records import RunRecord
from tasks.reports.figures import cost, funnel, total_seconds
from tasks.reports.format import (
    NA,
    NO_ABOUT,
    VERDICTS,
    About,
    checks_cell,
    seconds,
    usd,
    verdict,
    where,
)
from tasks.reports.sections import Cell, Problem, Table, run_report


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")


def _md_cell(cell: Cell) -> str:
    text = _cell(cell.text)
    return f"`{text}`" if cell.code and text != NA else text


def _md_table(table: Table) -> list[str]:
    lines = ["| " + " | ".join(table.head) + " |", "|" + "---|" * len(table.head)]
    return lines + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]


def _md_problem(problem: Problem) -> list[str]:
    lines = ["## What went wrong", "", problem.error]
    for function, tail in problem.log_tails:
        lines += ["", f"Log tail of `{function}`:", "", "```", tail.rstrip(), "```"]
    lines += [line for step, path in problem.full_logs for line in ("", f"Full CloudWatch log of {step}: `{path}`")]
    return [*lines, ""]


def render_markdown(record: RunRecord, about: About = NO_ABOUT) -> str:
    """The run's report.md, rendered from the report model (tasks/reports/sections.py)."""
    report = run_report(record, about)
    lines = [f"# {report.title}: {report.verdict}", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {_md_cell(cell)} |" for label, cell in report.meta]
    lines += [""]
    if report.problem:
        lines += _md_problem(report.problem)
    for section in report.sections:
        lines += [f"## {section.title}", ""]
        if section.intro:
            lines += [section.intro, ""]
        lines += _md_table(section.table) if section.table else [section.empty]
        if section.note:
            lines += ["", section.note]
        lines += [""]
    return "\n".join(lines).rstrip("\n") + "\n"


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
        values["cost (USD)"] = cost(record).usd
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
