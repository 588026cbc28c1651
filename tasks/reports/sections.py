"""One model of a run's report: its header, what went wrong, and its sections as tables of cells. Pure.

report.md and report.html are both rendered from this model (markdown.py, html.py), so they always say the same
thing in the same order; each renderer only decides how a cell, a table or a section looks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.pipeline.records import RunRecord
from tasks.reports.figures import cost, funnel, total_seconds
from tasks.reports.format import (
    NA,
    About,
    check_mark,
    checks_tally,
    count,
    memory,
    ms,
    observed,
    percent,
    seconds,
    size,
    usd,
    verdict,
)


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, and how it should look."""

    text: str
    code: bool = False  # an identifier, a URI, a digest
    number: bool = False  # a figure: right-aligned, never wrapped
    bar: float | None = None  # a share from 0 to 1 that a renderer may draw


@dataclass(frozen=True)
class Table:
    head: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    row_kinds: tuple[str, ...] = ()  # per row: "ok", "warn" or "fail" where the row is a check


@dataclass(frozen=True)
class Section:
    title: str
    table: Table | None  # None: nothing to show (`empty` is said instead)
    intro: str = ""
    note: str = ""
    empty: str = "None."


@dataclass(frozen=True)
class Problem:
    """What went wrong in a failed run: the error, each failed step's log tail, where full logs were saved."""

    error: str
    log_tails: tuple[tuple[str, str], ...] = ()  # (function name, tail)
    full_logs: tuple[tuple[str, str], ...] = ()  # (step, path)


@dataclass(frozen=True)
class RunReport:
    title: str
    verdict: str
    meta: tuple[tuple[str, Cell], ...]
    problem: Problem | None
    sections: tuple[Section, ...] = field(default_factory=tuple)


def _meta(record: RunRecord, about: About) -> tuple[tuple[str, Cell], ...]:
    rows = [
        ("client_id", Cell(record.client_id, code=True)),
        ("purpose", Cell(about.purpose or NA)),
        ("template", Cell(about.template or NA)),
        ("env", Cell(record.env)),
        ("target", Cell(record.target)),
        ("endpoint", Cell(record.endpoint or "AWS (default endpoints)")),
        ("config sha256", Cell(record.config_sha256 or NA, code=True)),
        ("started", Cell(record.started_at)),
        ("finished", Cell(record.finished_at or NA)),
        ("total", Cell(seconds(total_seconds(record)), number=True)),
    ]
    if record.resumed_from:
        rows.append(("resumed from", Cell(record.resumed_from)))
    rows += [("note", Cell(note)) for note in record.notes]
    return tuple(rows)


def _problem(record: RunRecord, about: About) -> Problem | None:
    failed = [s for s in record.steps if s.status != "passed"]
    if not (record.error or failed):
        return None
    return Problem(
        record.error or failed[0].error or NA,
        tuple((s.function_name, s.log_tail) for s in failed if s.log_tail),
        about.full_logs,
    )


def _steps(record: RunRecord) -> Section:
    head = ("#", "step", "function", "status", "duration", "billed", "init", "memory used / size", "request id")
    rows = tuple(
        (
            Cell(str(i), number=True),
            Cell(s.step),
            Cell(s.function_name, code=True),
            Cell(s.status),
            Cell(ms(s.duration_ms), number=True),
            Cell(ms(s.billed_duration_ms), number=True),
            Cell(ms(s.init_duration_ms), number=True),
            Cell(memory(s.max_memory_used_mb, s.memory_size_mb), number=True),
            Cell(s.request_id or NA, code=True),
        )
        for i, s in enumerate(record.steps, start=1)
    )
    return Section("Steps", Table(head, rows) if rows else None, empty="No step was invoked.")


def _funnel(record: RunRecord) -> Section:
    rows = tuple(
        (
            Cell(s.label),
            Cell(count(s.count), number=True, bar=s.of_first or 0),
            Cell(percent(s.of_previous), number=True),
            Cell(percent(s.of_first), number=True),
        )
        for s in funnel(record)
    )
    return Section("Funnel", Table(("stage", "items", "of previous", "of ingested"), rows))


def _outputs(record: RunRecord) -> Section:
    rows = tuple(
        (
            Cell(o.step),
            Cell(o.uri, code=True),
            Cell(size(o.size), number=True),
            Cell("yes" if o.ok else f"NO: {o.error or ''}"),
        )
        for o in record.outputs
    )
    return Section("Outputs verified", Table(("step", "S3 object", "size", "ok"), rows) if rows else None)


def _checks(record: RunRecord) -> Section:
    head = ("step", "check", "observed", "expected", "level", "result", "what was wrong")
    rows = tuple(
        tuple(Cell(text) for text in (c.step, c.name, observed(c), c.expected, c.level, check_mark(c), c.message))
        for c in record.checks
    )
    kinds = tuple("ok" if c.ok else c.level for c in record.checks)
    intro = f"Data-level checks: {checks_tally(record)}; thresholds from {record.expectations or NA}."
    return Section("Checks", Table(head, rows, kinds) if rows else None, intro if rows else "", empty="None ran.")


def _cost(record: RunRecord) -> Section:
    estimate = cost(record)
    rows = tuple(
        (
            Cell(c.step),
            Cell(c.architecture),
            Cell(NA if c.gb_seconds is None else f"{c.gb_seconds:.4f}", number=True),
            Cell(usd(c.usd), number=True),
        )
        for c in estimate.steps
    )
    rows = (*rows, (Cell("total"), Cell(""), Cell(""), Cell(usd(estimate.usd), number=True)))
    return Section("Estimated cost", Table(("step", "architecture", "GB-seconds", "cost"), rows), note=estimate.note)


def run_report(record: RunRecord, about: About) -> RunReport:
    """The report of one run: what report.md and report.html both show, in this order."""
    return RunReport(
        title=f"E2E run {record.run_id}",
        verdict=verdict(record),
        meta=_meta(record, about),
        problem=_problem(record, about),
        sections=(_steps(record), _funnel(record), _outputs(record), _checks(record), _cost(record)),
    )
