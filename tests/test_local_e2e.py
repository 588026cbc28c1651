"""The local E2E flow in-process: a context, the embedded AWS, three steps, outputs verified, the run recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.contexts import ContextStore
from tasks.errors import Busy
from tasks.files import run_lock
from tasks.local_e2e import LocalE2E
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
    assert reloaded.status == "passed" and reloaded.local["last_run"]["run_id"] == record.run_id


def test_a_rerun_makes_a_new_run_not_a_new_context(contexts_dir: Path, store: ContextStore) -> None:
    flow = LocalE2E(settings_for(contexts_dir), store)
    context = flow.context(None, "lai_weekly", "first")
    first = flow.run(context)
    second = flow.run(flow.context(context.client_id, "lai_weekly", None))
    assert first.run_id != second.run_id
    assert [c.client_id for c in store.list()] == [context.client_id]
    assert [r["run_id"] for r in store.load(context.client_id).runs] == [first.run_id, second.run_id]


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
