"""Render run records as self-contained HTML pages (no network, no external assets): a run, a comparison. Pure."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from html import escape

from tasks.pipeline.records import RunRecord, StepResult
from tasks.reports.figures import total_seconds
from tasks.reports.format import NA, NO_ABOUT, About, checks_cell, emulated, ms, where
from tasks.reports.markdown import comparison, delta, number
from tasks.reports.sections import Cell, Problem, Table, run_report

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;margin:2rem auto;
max-width:1100px;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.8rem 0 .6rem;border-bottom:1px solid #d9e2ec}
table{border-collapse:collapse;width:100%;margin:.4rem 0}th,td{border:1px solid #d9e2ec;padding:.3rem .5rem;
text-align:left;vertical-align:top}th{background:#f0f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}
code{font:12px ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
pre{background:#102a43;color:#f0f4f8;padding:.8rem;overflow-x:auto;font-size:12px;white-space:pre-wrap}
.badge{display:inline-block;padding:.2rem .7rem;border-radius:1rem;font-weight:600;color:#fff}
.passed{background:#2f8132}.failed{background:#c62828}.unknown{background:#b7791f}.interrupted{background:#616e7c}
.running{background:#2680c2}.meta td:first-child{width:12rem;color:#52606d}
.bar{background:#e4e7eb;height:.9rem;border-radius:.2rem;width:16rem}
.bar span{display:block;height:100%;background:#2680c2;border-radius:.2rem}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:-1px}
.note{color:#52606d;font-size:12px}.problem{border-left:4px solid #c62828;padding:.1rem 0 .1rem .8rem}
tr.check-ok td:last-child{color:#2f8132}tr.check-warn td{background:#fff4d6}tr.check-warn td:last-child{color:#8a5a00;
font-weight:600}tr.check-fail td{background:#fde8e8}tr.check-fail td:last-child{color:#c62828;font-weight:600}
.warnings{background:#b7791f}.emulated{background:#616e7c}
@media print{body{margin:0;max-width:none}pre{background:#fff;color:#000;border:1px solid #999}}
"""
BAR_COLOURS = {"passed": "#2680c2", "failed": "#c62828", "unknown": "#b7791f", "interrupted": "#616e7c"}


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def _badge(record: RunRecord) -> str:
    badge = f'<span class="badge {escape(record.status)}">{escape(record.status.upper())}</span>'
    if emulated(record):  # never a PASSED pill for the real env
        said = f"ON {where(record).upper()}, NOT THE REAL {record.env.upper()}"
        badge += f' <span class="badge emulated">{escape(said)}</span>'
    warnings = len(record.warnings)
    if warnings:
        badge += f' <span class="badge warnings">{warnings} WARNING{"S" * (warnings > 1)}</span>'
    return badge


def _table(
    head: list[str], rows: list[list[str]], numeric: Collection[int] = (), row_classes: list[str] | None = None
) -> str:
    cells = "".join(f"<th>{h}</th>" for h in head)
    classes = row_classes or [""] * len(rows)
    body = "".join(
        (f'<tr class="{css}">' if css else "<tr>")
        + "".join(f"<td{' class=num' if i in numeric else ''}>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row, css in zip(rows, classes, strict=True)
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _offset_ms(record: RunRecord, step: StepResult) -> float:
    return (datetime.fromisoformat(step.started_at) - datetime.fromisoformat(record.started_at)).total_seconds() * 1000


def timeline(record: RunRecord) -> str:
    """An inline SVG Gantt chart: one bar per step over the run's time, init time shaded apart from run time."""
    steps = list(record.steps)
    if not steps:
        return "<p>No step was invoked.</p>"
    ends = [_offset_ms(record, s) + (s.wall_ms or s.duration_ms or 0) for s in steps]
    span = max([*ends, (total_seconds(record) or 0) * 1000, 1.0])
    left, width, row = 170, 760, 34
    height = row * len(steps) + 40
    parts = [
        f'<svg class="timeline" role="img" aria-label="timeline of the steps" width="100%" '
        f'viewBox="0 0 {left + width + 80} {height}" xmlns="http://www.w3.org/2000/svg" '
        f'style="font:12px system-ui,sans-serif">'
    ]
    for tick in range(5):
        x = left + width * tick / 4
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 20}" stroke="#d9e2ec"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{height - 5}" text-anchor="middle" fill="#52606d">'
            f"{span * tick / 4 / 1000:.2f} s</text>"
        )
    for index, step in enumerate(steps):
        y = index * row + 6
        start = left + width * _offset_ms(record, step) / span
        wall = step.wall_ms or step.duration_ms or 0
        init = min(step.init_duration_ms or 0, wall)
        run = min(step.duration_ms if step.duration_ms is not None else wall - init, wall - init)
        colour = BAR_COLOURS.get(step.status, "#2680c2")
        title = escape(
            f"{step.step}: {step.status}, wall {ms(step.wall_ms)}, init {ms(step.init_duration_ms)}, "
            f"duration {ms(step.duration_ms)}"
        )
        parts.append(f'<g class="timeline-bar" data-step="{escape(step.step)}"><title>{title}</title>')
        parts.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{escape(step.step)}</text>')
        parts.append(
            f'<rect class="wall" x="{start:.1f}" y="{y}" width="{max(width * wall / span, 1):.1f}" '
            f'height="22" fill="{colour}" fill-opacity="0.18" stroke="{colour}"/>'
        )
        if init:
            parts.append(
                f'<rect class="init" x="{start:.1f}" y="{y}" width="{width * init / span:.1f}" height="22" '
                f'fill="{colour}" fill-opacity="0.45"/>'
            )
        parts.append(
            f'<rect class="run" x="{start + width * init / span:.1f}" y="{y}" '
            f'width="{max(width * max(run, 0) / span, 1):.1f}" height="22" fill="{colour}"/>'
        )
        parts.append(f'<text x="{start + width * wall / span + 6:.1f}" y="{y + 16}" fill="#1f2933">{ms(wall)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    legend = (
        '<p class="legend note"><span style="background:#2680c2;opacity:.45"></span>init (cold start)'
        '<span style="background:#2680c2"></span>handler run<span style="background:#2680c2;opacity:.18"></span>'
        "wall time seen by the toolkit (invoke round trip)</p>"
    )
    return "".join(parts) + legend


STAMPED = ("started", "finished")  # meta rows shown to the second


def _stamp(iso: str | None) -> str:
    """An ISO timestamp to the second, e.g. 2026-11-26 01:38:17 UTC (run.json keeps the full precision)."""
    if not iso or iso == NA:
        return NA
    moment = datetime.fromisoformat(iso)
    zone = moment.tzname() or ""
    return escape(f"{moment:%Y-%m-%d %H:%M:%S} {zone}".strip())


def _html_cell(cell: Cell) -> str:
    text = escape(cell.text)
    if cell.code and cell.text != NA:
        text = f"<code>{text}</code>"
    if cell.bar is not None:
        text += f'<div class="bar"><span style="width:{cell.bar * 100:.0f}%"></span></div>'
    return text


def _html_table(table: Table) -> str:
    numeric = {i for row in table.rows for i, cell in enumerate(row) if cell.number}
    kinds = [f"check-{kind}" for kind in table.row_kinds] or None
    return _table(list(table.head), [[_html_cell(c) for c in row] for row in table.rows], numeric, kinds)


def _html_problem(problem: Problem) -> list[str]:
    """A failed run's error, log tails and full logs: shown first, before any figure."""
    parts = ['<section class="problem"><h2>What went wrong</h2>', f"<p>{escape(problem.error)}</p>"]
    parts += [
        f"<p>Log tail of <code>{escape(function)}</code>:</p><pre>{escape(tail)}</pre>"
        for function, tail in problem.log_tails
    ]
    parts += [
        f"<p>Full CloudWatch log of {escape(step)}: <code>{escape(path)}</code></p>" for step, path in problem.full_logs
    ]
    return [*parts, "</section>"]


def _html_meta(label: str, cell: Cell) -> str:
    shown = _stamp(cell.text) if label in STAMPED else _html_cell(cell)
    return f"<tr><td>{escape(label)}</td><td>{shown}</td></tr>"


def render_html(record: RunRecord, about: About = NO_ABOUT) -> str:
    """The run's report.html: the report model (tasks/reports/sections.py) on one page, with a timeline."""
    report = run_report(record, about)
    body = [
        f"<h1>{escape(report.title)} {_badge(record)}</h1>",
        '<table class="meta">' + "".join(_html_meta(label, cell) for label, cell in report.meta) + "</table>",
        *(_html_problem(report.problem) if report.problem else []),
        "<h2>Timeline</h2>",
        timeline(record),
    ]
    for section in report.sections:
        body.append(f"<h2>{escape(section.title)}</h2>")
        if section.intro:
            body.append(f'<p class="note">{escape(section.intro)}</p>')
        body.append(_html_table(section.table) if section.table else f"<p>{escape(section.empty)}</p>")
        if section.note:
            body.append(f'<p class="note">{escape(section.note)}</p>')
    return _page(f"E2E run {record.run_id} ({record.status})", "\n".join(body))


def render_compare_html(records: list[RunRecord]) -> str:
    """A side-by-side comparison page with deltas against the first run."""
    labels, columns = comparison(records)
    head = [""] + [f"<code>{escape(c.record.client_id)}</code><br>{_badge(c.record)}" for c in columns]
    rows = [
        ["run"] + [escape(c.record.run_id) for c in columns],
        ["env"] + [escape(where(c.record)) for c in columns],
        ["payload"] + [f"<code>{escape(c.record.payload)}</code>" for c in columns],
        ["checks"] + [escape(checks_cell(c.record)) for c in columns],
    ]
    for label in labels:
        base = columns[0].values.get(label) if columns else None
        rows.append(
            [escape(label)]
            + [
                number(c.values.get(label), label) + (delta(c.values.get(label), base, label) if i else "")
                for i, c in enumerate(columns)
            ]
        )
    title = "Comparison of " + ", ".join(c.record.client_id for c in columns)
    body = f"<h1>{escape(title)}</h1><p class=note>Latest run of each; deltas against the first.</p>"
    return _page(title, body + _table(head, rows, set(range(1, len(columns) + 1))))
