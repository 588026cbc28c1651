"""The data-level checks and the chain, on the real pipeline's answers and files (tests/fixtures)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tasks.errors import ConfigError
from tasks.pipeline.checks import (
    DEFAULTS,
    Chain,
    CheckResult,
    chain_after,
    check_step,
    load_expectations,
    newsletter_event,
    not_normalized,
)
from tasks.pipeline.records import Invocation, OutputCheck, RunRecord, StepResult
from tasks.pipeline.runner import Runner
from tests.conftest import FIXTURES, REPO
from tests.fault_lambda import fallback

INGEST_FOLDER = "ingested/lai_weekly_v4/2025/12/19"
CHAIN = Chain(ingest_folder=INGEST_FOLDER, curated_date="2025/12/23")


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def body(name: str) -> dict[str, Any]:
    return json.loads(raw(f"responses/{name}"))["body"]


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def newsletter_files() -> dict[str, bytes]:
    return {
        "newsletter.md": raw("outputs/newsletter.md"),
        "newsletter.json": raw("outputs/newsletter.json"),
        "manifest.json": raw("outputs/manifest.json"),
    }


NEWSLETTER_OK = {"status": "success", "items_selected": 3, "target_date": "2025-12-23"}


def test_the_real_pipelines_good_run_passes_every_check() -> None:
    ingest = check_step(
        "ingest", body("ingest_ok.json"), {"items.json": raw("data/ingested_items.json")}, Chain(), DEFAULTS
    )
    normalize = check_step(
        "normalize-score",
        body("normalize_score_ok.json"),
        {"items.json": raw("data/curated_items.json")},
        CHAIN,
        DEFAULTS,
    )
    newsletter = check_step("newsletter", NEWSLETTER_OK, newsletter_files(), CHAIN, DEFAULTS)
    results = ingest + normalize + newsletter
    assert [r.name for r in results if not r.ok] == []
    assert len(results) == len(DEFAULTS.rules)


def test_nothing_ingested_fails_with_observed_and_expected() -> None:
    answer = body("ingest_ok.json") | {"items_final": 0, "sources_processed": 0, "sources_failed": 8}
    results = by_name(check_step("ingest", answer, {"items.json": b"[]"}, Chain(), DEFAULTS))
    assert (
        not results["items_written"].ok and results["items_written"].message == "items in items.json: 0, expected >= 1"
    )
    assert not results["items_final"].ok and results["items_final"].observed == 0
    assert results["count_matches_file"].ok  # 0 == 0: the file agrees with the answer, and both are empty
    assert "0 of 8 sources (8 failed)" in results["sources_ok"].message


def test_an_answer_that_disagrees_with_its_file_fails() -> None:
    results = by_name(check_step("ingest", body("ingest_ok.json"), {"items.json": b"[{}, {}]"}, Chain(), DEFAULTS))
    assert not results["count_matches_file"].ok
    assert results["count_matches_file"].message == "items_final vs items in items.json: 15, expected 2"


def test_items_json_that_is_not_a_list_fails() -> None:
    results = by_name(check_step("ingest", body("ingest_ok.json"), {"items.json": b"{oops"}, Chain(), DEFAULTS))
    assert not results["items_written"].ok and "not a JSON list" in results["items_written"].message


def curated(total: int, bad: int) -> bytes:
    items = json.loads(raw("data/curated_items.json"))
    return json.dumps([fallback(items[i % 15]) if i < bad else items[i % 15] for i in range(total)]).encode()


@pytest.mark.parametrize(("total", "bad", "ok"), [(10, 0, True), (10, 1, True), (10, 2, False), (15, 15, False)])
def test_the_share_of_fallback_items_is_held_to_its_threshold(total: int, bad: int, ok: bool) -> None:
    answer = body("normalize_score_ok.json") | {"last_run_path": INGEST_FOLDER}
    result = by_name(check_step("normalize-score", answer, {"items.json": curated(total, bad)}, CHAIN, DEFAULTS))
    share = result["not_normalized_share"]
    assert share.ok is ok and share.expected == "<= 10%"
    if not ok:
        assert f"{bad} of {total} items" in share.message


def test_empty_answers_count_as_not_normalized() -> None:
    item = json.loads(raw("data/curated_items.json"))[0]
    empty = item | {"normalized_content": {"summary": "", "entities": {"companies": []}}}
    assert not_normalized(empty) and not_normalized({"title": "no normalized_content"})
    assert not not_normalized(item)


def test_entity_statistics_all_zero_fail() -> None:
    answer = body("normalize_score_ok.json")
    answer["statistics"]["entity_statistics"] = {"companies": 0, "molecules": 0, "technologies": 0, "trademarks": 0}
    result = by_name(
        check_step("normalize-score", answer, {"items.json": raw("data/curated_items.json")}, CHAIN, DEFAULTS)
    )
    assert not result["entities_found"].ok


def test_a_normalize_that_read_another_folder_breaks_the_chain_naming_both_paths() -> None:
    answer = body("normalize_score_ok.json") | {
        "last_run_path": "ingested/lai_weekly_v4/2025/12/12",
        "output_path": "curated/lai_weekly_v4/2025/12/12/items.json",
    }
    result = by_name(
        check_step("normalize-score", answer, {"items.json": raw("data/curated_items.json")}, CHAIN, DEFAULTS)
    )
    read = result["reads_this_run_ingest"]
    assert not read.ok and "ingested/lai_weekly_v4/2025/12/12" in read.message and INGEST_FOLDER in read.message
    assert not result["writes_under_ingest_date"].ok


def test_a_newsletter_with_nothing_selected_or_files_that_disagree_fails() -> None:
    zero = by_name(check_step("newsletter", NEWSLETTER_OK | {"items_selected": 0}, newsletter_files(), CHAIN, DEFAULTS))
    assert not zero["items_selected"].ok and not zero["files_agree"].ok
    assert zero["files_agree"].observed == {"answer": 0, "newsletter.json": 3, "manifest.json": 3}
    empty_md = newsletter_files() | {"newsletter.md": b"# LAI Weekly\n**Items:** 0 signals\n"}
    results = by_name(check_step("newsletter", NEWSLETTER_OK, empty_md, CHAIN, DEFAULTS))
    assert not results["markdown_items"].ok


def test_a_newsletter_of_another_date_breaks_the_chain() -> None:
    result = by_name(
        check_step("newsletter", NEWSLETTER_OK, newsletter_files(), replace(CHAIN, curated_date="2025/12/24"), DEFAULTS)
    )
    assert not result["reads_this_run_curated"].ok
    assert (
        "2025/12/23" in result["reads_this_run_curated"].message
        and "2025/12/24" in result["reads_this_run_curated"].message
    )


def test_the_chain_follows_each_steps_answer() -> None:
    chain = chain_after("ingest", body("ingest_ok.json"), Chain())
    assert chain.ingest_folder == "ingested/lai_weekly_v4/2025/12/19"
    chain = chain_after("normalize-score", body("normalize_score_ok.json"), chain)
    assert chain.curated_date == "2025/12/19"


def test_target_date_is_sent_only_when_the_curated_date_is_not_today() -> None:
    event = {"client_id": "lai_weekly_v1"}
    assert newsletter_event(event, Chain("x", "2026/11/26"), "2026/11/26") == event
    assert newsletter_event(event, Chain("x", "2026/11/25"), "2026/11/26")["target_date"] == "2026-11-25"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "expect.yaml"
    path.write_text(text)
    return path


def test_the_committed_expectations_file_says_the_defaults(tmp_path: Path) -> None:
    loaded = load_expectations(REPO / "contexts" / "templates" / "lai_weekly.expect.yaml")
    assert dict(loaded.rules) == dict(DEFAULTS.rules)
    assert load_expectations(tmp_path / "missing.yaml") is DEFAULTS


def test_an_expectation_can_lower_a_check_to_a_warning_or_move_a_threshold(tmp_path: Path) -> None:
    path = write(tmp_path, "normalize-score:\n  not_normalized_share: {max: 0.5, level: warn}\n")
    loaded = load_expectations(path)
    rule = loaded.rule("normalize-score", "not_normalized_share")
    assert (rule.level, rule.limit) == ("warn", 0.5)
    assert loaded.rule("ingest", "items_final") == DEFAULTS.rule("ingest", "items_final")
    answer = body("normalize_score_ok.json") | {"last_run_path": INGEST_FOLDER}
    results = by_name(check_step("normalize-score", answer, {"items.json": curated(10, 6)}, CHAIN, loaded))
    assert results["not_normalized_share"].warned and not results["not_normalized_share"].failed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ingest:\n  items_finl: {min: 1}\n", "unknown check ingest.items_finl"),
        ("ingets: {}\n", "unknown step 'ingets'"),
        ("ingest:\n  items_final: {level: error}\n", "level 'error': use fail or warn"),
        ("ingest:\n  items_final: {min: many}\n", "min must be a number"),
        ("ingest:\n  items_final: {max: 3}\n", "unknown setting 'max'"),
        ("ingest: [unclosed\n", "not valid YAML"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_a_bad_expectations_file_is_named_with_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_expectations(path)
    assert str(path) in str(raised.value) and message in str(raised.value)


def test_the_runner_sends_target_date_when_the_curated_date_is_yesterday() -> None:
    """A run that crosses midnight UTC: the newsletter must read the curated items this run wrote, not today's."""
    sent: dict[str, dict[str, Any]] = {}
    answers = {
        "ingest": body("ingest_ok.json") | {"s3_output_path": "s3://d/ingested/c_v1/2026/11/25/items.json"},
        "normalize-score": body("normalize_score_ok.json")
        | {"last_run_path": "ingested/c_v1/2026/11/25", "output_path": "curated/c_v1/2026/11/25/items.json"},
        "newsletter": NEWSLETTER_OK | {"target_date": "2026-11-25"},
    }
    files = {
        "ingest": {"items.json": raw("data/ingested_items.json")},
        "normalize-score": {"items.json": raw("data/curated_items.json")},
        "newsletter": newsletter_files(),
    }
    files["newsletter"]["manifest.json"] = json.dumps({"target_date": "2026-11-25", "total_items": 3}).encode()

    def invoke(step: str, name: str, event: dict[str, Any]) -> Invocation:
        sent[step] = event
        return Invocation(name, 200, None, {"statusCode": 200, "body": answers[step]}, "", "r", "$LATEST")

    def verify(result: StepResult, started: datetime) -> list[OutputCheck]:
        return [OutputCheck(result.step, f"s3://b/{result.step}/{n}", 10, True) for n in files[result.step]]

    def read(uri: str) -> bytes:
        step, name = uri.removeprefix("s3://b/").split("/")
        return files[step][name]

    clock = iter(datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC) + timedelta(seconds=s) for s in range(100))
    record = RunRecord(
        "r", "c_v1", "local", "t", None, "running", "2026-11-25T23:59:59+00:00", None, None, {"client_id": "c_v1"}
    )
    done = Runner(invoke, verify, read, lambda: next(clock)).run(record, {s: s for s in files})
    assert sent["newsletter"] == {"client_id": "c_v1", "target_date": "2026-11-25"}
    assert sent["ingest"] == {"client_id": "c_v1"}
    assert done.status == "passed", done.error
    assert done.steps[2].event == sent["newsletter"]
    assert len(done.checks) == len(DEFAULTS.rules) and all(c.ok for c in done.checks)


def test_a_check_that_fails_fails_its_step_and_stops_the_run() -> None:
    record = RunRecord(
        "r", "c_v1", "local", "t", None, "running", "2026-11-26T00:00:00+00:00", None, None, {"client_id": "c_v1"}
    )
    calls: list[str] = []

    def invoke(step: str, name: str, event: dict[str, Any]) -> Invocation:
        calls.append(step)
        answer = body("ingest_ok.json") | {"items_final": 0}
        return Invocation(name, 200, None, {"statusCode": 200, "body": answer}, "", "r", "$LATEST")

    clock = iter(datetime(2026, 11, 26, tzinfo=UTC) + timedelta(seconds=s) for s in range(100))
    done = Runner(
        invoke,
        lambda result, started: [OutputCheck("ingest", "s3://b/items.json", 2, True)],
        lambda uri: b"[]",
        lambda: next(clock),
    ).run(record, {"ingest": "fn-ingest", "normalize-score": "fn-n", "newsletter": "fn-l"})
    assert calls == ["ingest"]
    assert (done.status, done.exit_code, done.steps[0].status) == ("failed", 1, "failed")
    assert done.error.startswith("data check items_written failed: items in items.json: 0, expected >= 1")
    assert done.expectations == "built-in defaults"
