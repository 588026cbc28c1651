"""Contexts: client_id rules, allocation, rendering, concurrency."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.contexts.listing import Listed, listing
from tasks.contexts.records import RunSummary
from tasks.contexts.store import BrokenContext, ContextStore, validate_client_id
from tasks.errors import ConfigError, UsageError
from tests.conftest import REPO, edit_cached_row, run_tasks, safe_environ

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("client_id", ["lai_weekly_v1", "lai_weekly_v12", "a_v1", "x2_y_v10"])
def test_well_formed_client_ids_are_accepted(client_id: str) -> None:
    assert validate_client_id(client_id) == client_id


@pytest.mark.parametrize(
    "client_id",
    [
        "../etc",
        "../x",
        "lai weekly",
        "LAI WEEKLY",
        "LAI_WEEKLY_V1",
        "lai_weekly_v0",
        "lai_weekly",
        "1lai_v1",
        "lai_weekly_v01",
        "a" * 190 + "_v1",
        "",
        "lai_weekly_v1/..",
        "lai-weekly_v1",
    ],
)
def test_malformed_client_ids_are_refused_with_the_rule(client_id: str) -> None:
    with pytest.raises(UsageError, match="client_id"):
        validate_client_id(client_id)


def test_client_ids_count_up_from_v1_and_skip_versions_seen_elsewhere(store: ContextStore) -> None:
    assert store.create("lai_weekly", "first", NOW).client_id == "lai_weekly_v1"
    assert store.create("lai_weekly", "second", NOW).client_id == "lai_weekly_v2"
    assert store.create("lai_weekly", "after s3", NOW, other_versions=[12]).client_id == "lai_weekly_v13"
    assert [c.client_id for c in store.list()] == ["lai_weekly_v1", "lai_weekly_v2", "lai_weekly_v13"]


def test_a_client_id_is_never_reused_even_when_its_context_failed(store: ContextStore) -> None:
    failed = store.create("lai_weekly", "will fail", NOW)
    store.update(failed.client_id, lambda context: replace(context, status="failed"))
    assert store.create("lai_weekly", "next", NOW).client_id == "lai_weekly_v2"


def test_purpose_with_quotes_newlines_and_unicode_is_stored_faithfully(store: ContextStore) -> None:
    purpose = 'Test "quoted" purpose: {{CLIENT_ID}}\nsecond line: é ü 日本 — ok\n' + "x" * 10_000
    context = store.create("lai_weekly", purpose, NOW)
    config = yaml.safe_load(context.config_path.read_bytes())
    assert config["metadata"]["test_purpose"] == purpose  # a placeholder inside the purpose stays text
    assert config["client_profile"]["client_id"] == "lai_weekly_v1"
    assert store.load(context.client_id).purpose == purpose


def test_the_rendered_config_records_its_sha256(store: ContextStore) -> None:
    import hashlib

    context = store.create("lai_weekly", "sha", NOW)
    assert context.config_sha256 == hashlib.sha256(context.config_path.read_bytes()).hexdigest()


def test_an_unknown_template_is_refused_and_lists_the_known_ones(store: ContextStore) -> None:
    with pytest.raises(UsageError, match=r"unknown template 'nope'.*lai_weekly"):
        store.create("nope", "x", NOW)
    with pytest.raises(UsageError, match="unknown template"):
        store.create("../templates/lai_weekly", "x", NOW)
    assert store.list() == []


@pytest.mark.parametrize("template", ["lai_test", "synthetic_weekly", "contest"])
def test_a_template_whose_client_ids_the_real_normalize_refuses_is_refused_through_the_cli(
    contexts_dir: Path, template: str
) -> None:
    shutil.copy(contexts_dir / "templates" / "lai_weekly.yaml", contexts_dir / "templates" / f"{template}.yaml")
    env = safe_environ(CONTEXTS_DIR=str(contexts_dir))
    result = run_tasks(env, "context", "new", "--template", template)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "the real normalize-score refuses data paths containing" in result.stderr
    assert not list(contexts_dir.glob(f"{template}_v*"))


def test_a_new_context_gets_its_own_editable_copy_of_the_templates_expectations(store: ContextStore) -> None:
    context = store.create("lai_weekly", "x", NOW)
    template = store.expectations_template("lai_weekly")
    assert context.expectations_path.read_bytes() == template.read_bytes()
    with pytest.raises(UsageError) as unknown:
        store.create("nope", "x", NOW)
    assert "lai_weekly.expect" not in str(unknown.value)  # an expectations file is not a template


def test_a_template_that_is_not_yaml_names_file_and_line(store: ContextStore, contexts_dir: Path) -> None:
    (contexts_dir / "templates" / "broken.yaml").write_text("client_profile:\n  name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: not valid YAML"):
        store.create("broken", "x", NOW)
    assert not (contexts_dir / "broken_v1").exists()


def test_a_template_missing_a_required_key_names_the_key(store: ContextStore, contexts_dir: Path) -> None:
    (contexts_dir / "templates" / "thin.yaml").write_text("client_profile:\n  client_id: '{{CLIENT_ID}}'\n")
    with pytest.raises(ConfigError, match=r"thin\.yaml: missing required key 'watch_domains'"):
        store.create("thin", "x", NOW)
    assert not (contexts_dir / "thin_v1").exists()


def test_an_unknown_placeholder_is_an_error_and_leaves_nothing(store: ContextStore, contexts_dir: Path) -> None:
    text = (contexts_dir / "templates" / "lai_weekly.yaml").read_text().replace("{{DATE}}", "{{WHEN}}")
    (contexts_dir / "templates" / "odd.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"unknown placeholder \{\{WHEN\}\}"):
        store.create("odd", "x", NOW)
    assert not (contexts_dir / "odd_v1").exists()


def test_loading_a_missing_context_says_how_to_list_them(store: ContextStore) -> None:
    with pytest.raises(UsageError, match=r"no context lai_weekly_v9.*make contexts"):
        store.load("lai_weekly_v9")


def test_sixteen_concurrent_creations_get_sixteen_distinct_ids(contexts_dir: Path) -> None:
    env = safe_environ(CONTEXTS_DIR=str(contexts_dir))
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tasks", "context", "new", "--purpose", f"p{i}"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(16)
    ]
    ids = [child.communicate(timeout=60)[0].strip() for child in children]
    assert all(child.returncode == 0 for child in children)
    assert sorted(ids) == sorted(f"lai_weekly_v{n}" for n in range(1, 17))
    assert len(ContextStore(contexts_dir).list()) == 16


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda record: [], "is not a JSON object but list"),
        (lambda record: {k: v for k, v in record.items() if k != "template"}, "lacks the key 'template'"),
        (lambda record: record | {"runs": {"a": 1}}, "'runs' should be a list, not dict"),
        (lambda record: record | {"runs": [{"run_id": 1}]}, "runs[] lacks the key 'env'"),
        (
            lambda record: record | {"runs": [{"run_id": 1, "env": "local", "status": "x", "started_at": "t"}]},
            "runs[].run_id should be a string",
        ),
        (lambda record: record | {"local": {"run_id": "r"}}, "local lacks the key 'env'"),
        (lambda record: record | {"targets": {"dev": []}}, "targets['dev'] should be an object, not list"),
        (lambda record: record | {"client_id": "lai_weekly_v9"}, "names client_id 'lai_weekly_v9'"),
    ],
)
def test_a_broken_record_is_named_refused_and_listed_as_broken(store: ContextStore, change: Any, problem: str) -> None:
    context = store.create("lai_weekly", "to break", datetime.now(UTC))
    path = context.path / "context.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    for action in (lambda: store.load(context.client_id), lambda: store.update(context.client_id, lambda c: c)):
        with pytest.raises(ConfigError, match=re.escape(f"{path}: {problem}")):
            action()
    [broken] = store.scan()
    assert isinstance(broken, BrokenContext) and problem in broken.problem and store.list() == []


def test_the_listing_is_cached_by_each_context_json_and_never_stale(store: ContextStore, contexts_dir: Path) -> None:
    first = store.create("lai_weekly", "first", NOW)
    second = store.create("lai_weekly", "second", NOW)
    assert [c.purpose for c in listing(store) if isinstance(c, Listed)] == ["first", "second"]
    cache = contexts_dir / ".listing.cache"
    written = cache.stat()
    assert [c.purpose for c in listing(store) if isinstance(c, Listed)] == ["first", "second"]
    assert cache.stat().st_ino == written.st_ino  # every entry was a hit: the cache was not written again
    store.update(second.client_id, lambda context: replace(context, status="failed"))  # a rewrite: a new stamp
    (first.path / "context.json").write_text("{truncated")
    rows = {c.client_id: c for c in listing(store)}
    assert isinstance(rows[first.client_id], BrokenContext) and "not JSON" in rows[first.client_id].problem
    assert isinstance(rows[second.client_id], Listed) and rows[second.client_id].status == "failed"
    cache.write_text("[not a cache")  # a damaged cache is ignored and rebuilt
    assert [c.client_id for c in listing(store)] == [first.client_id, second.client_id]
    assert cache.read_bytes().startswith(b"vectora-listing 2\n")


def failed_run(store: ContextStore, client_id: str) -> None:
    """Record a failed local run of the context (what a failed `make local-e2e` leaves in context.json)."""
    run = RunSummary("r1", "local", "failed", NOW.isoformat(), NOW.isoformat(), config_sha256="ab" * 32, exit_code=1)
    store.update(client_id, lambda c: replace(c, status="failed", runs=(run,), local=run))


def test_a_cached_row_edited_to_say_passed_and_promoted_shows_the_truth(
    store: ContextStore, contexts_dir: Path
) -> None:
    context = store.create("lai_weekly", "never promoted", NOW)
    failed_run(store, context.client_id)
    listing(store)

    def lie(row: dict[str, Any]) -> dict[str, Any]:
        row |= {"status": "passed", "promoted": ["prod"], "statuses": {"local": "passed", "prod": "passed"}}
        row["last_run"] |= {"status": "passed", "exit_code": 0}
        return row

    edit_cached_row(contexts_dir, context.client_id, lie)
    [listed] = listing(store)
    assert isinstance(listed, Listed) and listed.status == "failed" and listed.promoted == ()
    assert listed.statuses == {"local": "failed"} and listed.last_run and listed.last_run.status == "failed"


@pytest.mark.parametrize(
    "damage",
    [
        {"purpose": 5},
        {"promoted": "prod"},
        {"statuses": {"local": 0}},
        {"last_run": {"run_id": "r1", "env": "local", "status": "passed", "started_at": "t", "cost_usd": "free"}},
        {"client_id": "lai_weekly_v9"},
    ],
)
def test_a_damaged_cached_row_is_read_again(store: ContextStore, contexts_dir: Path, damage: dict[str, Any]) -> None:
    """Even a row whose digest matches (a writer's bug, not an edit) is used only when every field has its type."""
    context = store.create("lai_weekly", "damaged", NOW)
    failed_run(store, context.client_id)
    [fresh] = listing(store)
    edit_cached_row(contexts_dir, context.client_id, lambda row: row | damage, context.path / "context.json")
    assert listing(store) == [fresh]


def test_every_cached_field_equals_a_fresh_read(store: ContextStore, contexts_dir: Path) -> None:
    context = store.create("lai_weekly", "cached", NOW)
    failed_run(store, context.client_id)
    fresh = listing(store)
    cached = listing(store)
    assert cached == fresh and isinstance(fresh[0], Listed) and fresh[0].last_run
    assert fresh[0].last_run == store.load(context.client_id).last_run  # finished_at, config_sha256, exit_code...
