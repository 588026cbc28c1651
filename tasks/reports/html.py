"""Render run records as self-contained HTML pages (no network, no external assets): a run, a comparison. Pure."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from html import escape

from tasks.pipeline.records import RunRecord, StepResult
from tasks.reports.figures import cost, funnel, total_seconds
from tasks.reports.markdown import (
    NA,
    NO_ABOUT,
    About,
    check_mark,
    checks_cell,
    checks_tally,
    comparison,
    count,
    delta,
    emulated,
    memory,
    ms,
    number,
    observed,
    percent,
    seconds,
    size,
    usd,
    where,
)

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


def checks_section(record: RunRecord) -> str:
    """The data-level checks: a row each, ok in green, a warning in amber, a failure in red."""
    if not record.checks:
        return "<p>None ran.</p>"
    rows = [
        [escape(text) for text in (c.step, c.name, observed(c), c.expected, c.level, check_mark(c), c.message)]
        for c in record.checks
    ]
    css = ["check-ok" if c.ok else f"check-{c.level}" for c in record.checks]
    intro = (
        f'<p class="note">Data-level checks: {escape(checks_tally(record))}; thresholds from '
        f"<code>{escape(record.expectations or NA)}</code>.</p>"
    )
    head = ["step", "check", "observed", "expected", "level", "result", "what was wrong"]
    return intro + _table(head, rows, (), css)


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


def _stamp(iso: str | None) -> str:
    """An ISO timestamp to the second, e.g. 2026-11-26 01:38:17 UTC (run.json keeps the full precision)."""
    if not iso:
        return NA
    moment = datetime.fromisoformat(iso)
    zone = moment.tzname() or ""
    return escape(f"{moment:%Y-%m-%d %H:%M:%S} {zone}".strip())


def _problem(record: RunRecord, about: About) -> list[str]:
    """A failed run's error, the failed steps' log tails and full logs: shown first, before any figure."""
    failed = [s for s in record.steps if s.status != "passed"]
    if not (record.error or failed):
        return []
    parts = [
        '<section class="problem"><h2>What went wrong</h2>',
        f"<p>{escape(record.error or failed[0].error or NA)}</p>",
    ]
    parts += [
        f"<p>Log tail of <code>{escape(s.function_name)}</code>:</p><pre>{escape(s.log_tail)}</pre>"
        for s in failed
        if s.log_tail
    ]
    parts += [
        f"<p>Full CloudWatch log of {escape(step)}: <code>{escape(path)}</code></p>" for step, path in about.full_logs
    ]
    return [*parts, "</section>"]


def render_html(record: RunRecord, about: About = NO_ABOUT) -> str:
    """The run's report.html: the same content as report.md, with a timeline of the steps."""
    meta = [
        ("client_id", f"<code>{escape(record.client_id)}</code>"),
        ("purpose", escape(about.purpose) or NA),
        ("template", escape(about.template) or NA),
        ("env / target", f"{escape(record.env)} / {escape(record.target)}"),
        ("endpoint", escape(record.endpoint or "AWS (default endpoints)")),
        ("config sha256", f"<code>{escape(record.config_sha256 or NA)}</code>"),
        ("started / finished", f"{_stamp(record.started_at)} / {_stamp(record.finished_at)}"),
        ("total", seconds(total_seconds(record))),
    ]
    if record.resumed_from:
        meta.append(("resumed from", escape(record.resumed_from)))
    meta += [("note", escape(note)) for note in record.notes]
    body = [
        f"<h1>E2E run {escape(record.run_id)} {_badge(record)}</h1>",
        '<table class="meta">' + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in meta) + "</table>",
        *_problem(record, about),
        "<h2>Timeline</h2>",
        timeline(record),
        "<h2>Steps</h2>",
        _table(
            ["#", "step", "function", "status", "duration", "billed", "init", "memory used / size", "request id"],
            [
                [
                    str(i),
                    escape(s.step),
                    f"<code>{escape(s.function_name)}</code>",
                    escape(s.status),
                    ms(s.duration_ms),
                    ms(s.billed_duration_ms),
                    ms(s.init_duration_ms),
                    memory(s.max_memory_used_mb, s.memory_size_mb),
                    f"<code>{escape(s.request_id or NA)}</code>",
                ]
                for i, s in enumerate(record.steps, start=1)
            ],
            {4, 5, 6, 7},
        ),
        "<h2>Funnel</h2>",
        _table(
            ["stage", "items", "", "of previous", "of ingested"],
            [
                [
                    escape(s.label),
                    count(s.count),
                    f'<div class="bar"><span style="width:{(s.of_first or 0) * 100:.0f}%"></span></div>',
                    percent(s.of_previous),
                    percent(s.of_first),
                ]
                for s in funnel(record)
            ],
            {1, 3, 4},
        ),
        "<h2>Outputs verified</h2>",
        _table(
            ["step", "S3 object", "size", "ok"],
            [
                [
                    escape(o.step),
                    f"<code>{escape(o.uri)}</code>",
                    size(o.size),
                    "yes" if o.ok else f"<strong>NO</strong>: {escape(o.error or '')}",
                ]
                for o in record.outputs
            ],
            {2},
        )
        if record.outputs
        else "<p>None.</p>",
    ]
    body += ["<h2>Checks</h2>", checks_section(record)]
    estimate = cost(record, record.region or "eu-west-3")
    rows = [
        [escape(c.step), c.architecture, NA if c.gb_seconds is None else f"{c.gb_seconds:.4f}", usd(c.usd)]
        for c in estimate.steps
    ]
    rows.append(["<strong>total</strong>", "", "", f"<strong>{usd(estimate.usd)}</strong>"])
    body += [
        "<h2>Estimated cost</h2>",
        _table(["step", "architecture", "GB-seconds", "cost"], rows, {2, 3}),
        f'<p class="note">{escape(estimate.note)}</p>',
    ]
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
