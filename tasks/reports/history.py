"""A context's runs: load and re-render one, summarize every context (from context.json alone), pick runs to compare."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tasks.contexts.files import read_json
from tasks.contexts.listing import Listed, listing
from tasks.contexts.records import target_label
from tasks.contexts.runs import RunFolder, summarize, write_reports
from tasks.contexts.store import BrokenContext, Context, ContextStore
from tasks.errors import ConfigError, UsageError
from tasks.pipeline.records import RunRecord, run_problem
from tasks.reports.markdown import ContextRow


def load_run(context: Context, run_id: str) -> RunRecord | None:
    """A run of context from its run.json, or None when its folder is gone (deleted by hand).

    A run.json that is not JSON or not a run record is a ConfigError naming the file.
    """
    path = RunFolder(context.runs_dir / run_id).run_json
    if not path.is_file():
        return None
    document = read_json(path)
    problem = run_problem(document)
    if problem:
        raise ConfigError(f"{path}: {problem}; remove the run folder or render another run (--run-id)")
    return RunRecord.from_json(document)


def latest_run(context: Context, env: str | None = None) -> RunRecord | None:
    """The context's most recent run (on env, if given) whose folder still exists."""
    for summary in reversed(context.runs):
        if env is None or summary.env == env:
            record = load_run(context, summary.run_id)
            if record is not None:
                return record
    return None


def rerender(
    context: Context, run_id: str | None = None, secrets: tuple[str, ...] = ()
) -> tuple[RunRecord, list[Path]]:
    """Render again the reports of one run (the latest by default) from its run.json, masking secrets."""
    record = load_run(context, run_id) if run_id else latest_run(context)
    if record is None:
        which = f"run {run_id}" if run_id else "run"
        raise UsageError(
            f"{context.client_id} has no {which} with a run.json (deleted by hand?): `make contexts` shows its runs"
        )
    return record, write_reports(RunFolder(context.runs_dir / record.run_id), record, context, secrets)


def _newest(records: Sequence[RunRecord | None]) -> RunRecord | None:
    known = [r for r in records if r is not None]
    return max(known, key=lambda r: r.started_at) if known else None


def _row(context: Listed | BrokenContext, published: Sequence[RunRecord]) -> ContextRow:
    """A context's summary row, from its listing (no run.json is read); a broken context shows as broken."""
    if isinstance(context, BrokenContext):
        return ContextRow(context.client_id, f"broken: {context.problem}", "broken", {}, None)
    candidates = [context.last_run, *(summarize(r) for r in published if r.client_id == context.client_id)]
    newest = max((c for c in candidates if c), key=lambda c: c.started_at, default=None)
    return ContextRow(context.client_id, context.purpose, context.status, context.statuses, newest)


def summary(store: ContextStore, published: Sequence[RunRecord] = ()) -> list[ContextRow]:
    """One row per context (local, or known only from published runs): status per target and its latest run."""
    rows = [_row(context, published) for context in listing(store)]
    local_ids = {row.client_id for row in rows}
    for client_id in sorted({r.client_id for r in published} - local_ids):
        last = _newest([r for r in published if r.client_id == client_id])
        assert last is not None
        label = target_label(last.env, last.endpoint)
        rows.append(
            ContextRow(
                client_id, "(published run; no local context)", last.status, {label: last.status}, summarize(last)
            )
        )
    return rows


def runs_to_compare(store: ContextStore, client_ids: list[str], published: Sequence[RunRecord]) -> list[RunRecord]:
    """The latest run of each client_id, local or published, in the order given."""
    if len(client_ids) < 2:
        raise UsageError("compare needs at least two client_ids, e.g. compare lai_weekly_v11 lai_weekly_v12")
    records = []
    for client_id in client_ids:
        local = latest_run(store.load(client_id)) if store.exists(client_id) else None
        newest = _newest([local, *(r for r in published if r.client_id == client_id)])
        if newest is None:
            raise UsageError(f"{client_id} has no run to compare (no local context or published run)")
        records.append(newest)
    return records
