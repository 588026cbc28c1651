"""The local E2E flow in-process: a context, the embedded AWS, three steps, outputs verified, the run recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.aws import client_configs
from tasks.contexts.files import run_lock
from tasks.contexts.store import ContextStore
from tasks.errors import Busy
from tasks.flows.local_e2e import LocalE2E
from tests.conftest import settings_for

STEP_KEYS = {
    "step",
    "function_name",
    "status",
    "duration_ms",
    "billed_duration_ms",
    "init_duration_ms",
    "memory_size_mb",
    "max_memory_used_mb",
    "request_id",
    "function_error",
    "status_code",
    "body_status",
    "error",
}
RUN_KEYS = {
    "schema_version",
    "run_id",
    "client_id",
    "env",
    "target",
    "endpoint",
    "status",
    "started_at",
    "finished_at",
    "steps",
    "outputs",
}


def run_json(store: ContextStore, client_id: str, run_id: str) -> dict:
    return json.loads((store.load(client_id).runs_dir / run_id / "run.json").read_text())


def test_a_new_context_passes_end_to_end_and_leaves_a_newsletter(contexts_dir: Path, store: ContextStore) -> None:
    lines = []
    flow = LocalE2E(settings_for(contexts_dir), store, on_step_end=lambda i, n, r, c: lines.append((i, n, r.status)))
    context = flow.context(None, "lai_weekly", 'purpose with "quotes"')
    record = flow.run(context)
    assert (record.status, record.exit_code) == ("passed", 0)
    assert lines == [(1, 3, "passed"), (2, 3, "passed"), (3, 3, "passed")]
    document = run_json(store, context.client_id, record.run_id)
    assert RUN_KEYS <= document.keys()
    assert all(STEP_KEYS <= step.keys() for step in document["steps"])
    assert [o["ok"] for o in document["outputs"]] == [True] * 5
    assert document["endpoint"].startswith("http://127.0.0.1:")
    run_dir = context.runs_dir / record.run_id
    newsletter = (run_dir / "outputs" / "newsletter" / "newsletter.md").read_text()
    assert newsletter.startswith(f"# {context.client_id}") and "Read more" in newsletter
    assert "PASSED" in (run_dir / "report.md").read_text()
    reloaded = store.load(context.client_id)
    assert reloaded.status == "passed" and reloaded.local and reloaded.local.run_id == record.run_id
    assert reloaded.local.config_sha256 == client_configs.sha256(context.config_path.read_bytes())
    assert reloaded.local.checks_total == 13 and reloaded.local.total_seconds


def test_a_rerun_makes_a_new_run_not_a_new_context(contexts_dir: Path, store: ContextStore) -> None:
    flow = LocalE2E(settings_for(contexts_dir), store)
    context = flow.context(None, "lai_weekly", "first")
    first = flow.run(context)
    second = flow.run(flow.context(context.client_id, "lai_weekly", None))
    assert first.run_id != second.run_id
    assert [c.client_id for c in store.list()] == [context.client_id]
    assert [r.run_id for r in store.load(context.client_id).runs] == [first.run_id, second.run_id]


def test_a_failing_handler_fails_the_run_stops_and_is_recorded(
    contexts_dir: Path, store: ContextStore, tmp_path: Path
) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "handler.py").write_text("def lambda_handler(event, context):\n    raise RuntimeError('no scopes')\n")
    flow = LocalE2E(settings_for(contexts_dir, LOCAL_HANDLER_NORMALIZE_SCORE=f"{folder}:handler.lambda_handler"), store)
    context = flow.context(None, "lai_weekly", "broken normalize")
    record = flow.run(context)
    assert (record.status, record.exit_code) == ("failed", 1)
    assert [s.step for s in record.steps] == ["ingest", "normalize-score"]
    assert "RuntimeError: no scopes" in record.error
    document = run_json(store, context.client_id, record.run_id)
    assert document["status"] == "failed" and document["steps"][1]["function_error"] == "Unhandled"
    assert "no scopes" in (context.runs_dir / record.run_id / "report.md").read_text()
    assert store.load(context.client_id).status == "failed"


def test_a_second_run_of_a_busy_context_is_refused(contexts_dir: Path, store: ContextStore) -> None:
    flow = LocalE2E(settings_for(contexts_dir), store)
    context = flow.context(None, "lai_weekly", "busy")
    with run_lock(context.path / ".run.lock", "test holder"), pytest.raises(Busy, match="is busy"):
        flow.run(context)
    assert store.load(context.client_id).runs == ()


@pytest.mark.parametrize(
    ("simulate", "step", "checks", "observed"),
    [
        ("nothing_ingested", "ingest", {"items_written", "items_final", "sources_ok"}, "items in items.json: 0"),
        ("bedrock_down", "normalize-score", {"not_normalized_share", "entities_found"}, "(100%) fallback or empty"),
        ("bedrock_empty", "normalize-score", {"not_normalized_share", "entities_found"}, "(100%) fallback or empty"),
        ("stale_input", "normalize-score", {"reads_this_run_ingest", "writes_under_ingest_date"}, "normalize read"),
        ("nothing_selected", "newsletter", {"items_selected", "markdown_items"}, "items_selected in the answer: 0"),
    ],
)
def test_a_pipeline_that_answers_success_without_doing_the_work_fails(
    contexts_dir: Path, store: ContextStore, simulate: str, step: str, checks: set[str], observed: str
) -> None:
    flow = LocalE2E(settings_for(contexts_dir), store)
    context = flow.context(None, "lai_weekly", simulate)
    record = flow.run(context, {"simulate": simulate})
    assert (record.status, record.exit_code) == ("failed", 1)
    assert record.steps[-1].step == step and record.steps[-1].status == "failed"
    assert all(s.body_status in ("success", "completed") for s in record.steps)  # every answer said success
    assert {c.name for c in record.checks if not c.ok} == checks
    assert observed in record.error and "expected" in record.error
    document = run_json(store, context.client_id, record.run_id)
    failed = [c for c in document["checks"] if not c["ok"]]
    assert {c["name"] for c in failed} == checks
    assert all({"step", "name", "observed", "expected", "level", "ok"} <= c.keys() for c in document["checks"])


def test_a_good_run_records_every_check_in_run_json_and_reports(contexts_dir: Path, store: ContextStore) -> None:
    flow = LocalE2E(settings_for(contexts_dir), store)
    context = flow.context(None, "lai_weekly", "good")
    record = flow.run(context)
    assert record.status == "passed" and len(record.checks) == 13 and all(c.ok for c in record.checks)
    assert record.expectations == str(context.expectations_path)
    run_dir = context.runs_dir / record.run_id
    assert "## Checks" in (run_dir / "report.md").read_text() and "13/13 held" in (run_dir / "report.md").read_text()
    junit = (run_dir / "junit.xml").read_text()
    assert junit.count('name="check ') == 13 and 'failures="0"' in junit


def test_a_check_lowered_to_warn_passes_the_run_and_shows_the_warning_in_amber(
    contexts_dir: Path, store: ContextStore
) -> None:
    flow = LocalE2E(settings_for(contexts_dir), store)
    context = flow.context(None, "lai_weekly", "warn only")
    expect = context.expectations_path.read_text()
    assert "not_normalized_share: {max: 0.10, level: fail}" in expect  # copied from the template at creation
    expect = expect.replace("not_normalized_share: {max: 0.10, level: fail}", "not_normalized_share: {level: warn}")
    context.expectations_path.write_text(
        expect.replace("entities_found: {min: 1, level: fail}", "entities_found: {level: warn}")
    )
    record = flow.run(context, {"simulate": "bedrock_empty", "period_days": 30})
    # Empty answers have no matches, so the newsletter selects nothing and fails there: the warnings did not stop it.
    assert record.steps[1].status == "passed" and {c.name for c in record.warnings} == {
        "not_normalized_share",
        "entities_found",
    }
    run_dir = context.runs_dir / record.run_id
    report = (run_dir / "report.md").read_text()
    assert "⚠️ WARN" in report and "2 warnings" in report
    html = (run_dir / "report.html").read_text()
    assert html.count('class="check-warn"') == 2 and "2 WARNINGS" in html
    junit = (run_dir / "junit.xml").read_text()
    assert "WARNING: items not really normalized" in junit
    assert 'type="DataCheck"' in junit  # the newsletter's own failures, not the warnings


def test_a_dry_run_skips_the_output_checks_and_says_so(contexts_dir: Path, store: ContextStore) -> None:
    flow = LocalE2E(settings_for(contexts_dir), store)
    context = flow.context(None, "lai_weekly", "dry")
    record = flow.run(context, {"dry_run": True})
    assert record.steps[0].status == "passed" and record.outputs == () and record.checks == ()
    assert any("dry run" in note for note in record.notes)
    assert "output, data and chain checks were skipped" in (context.runs_dir / record.run_id / "report.md").read_text()
