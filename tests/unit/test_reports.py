"""Report rendering (pure) on run records built from the real answers, and the report commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tasks.contexts.runs import summarize
from tasks.pipeline.checks import CheckResult
from tasks.pipeline.judging import step_result
from tasks.pipeline.records import Invocation, OutputCheck, RunRecord, StepResult
from tasks.reports.figures import cost, funnel
from tasks.reports.format import About
from tasks.reports.html import render_compare_html, render_html
from tasks.reports.junit import render_junit
from tasks.reports.markdown import ContextRow, render_compare, render_markdown, render_summary
from tasks.reports.workflow_log import render_workflow_log
from tasks.visible import visible
from tests.conftest import FIXTURES

START = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def report_line(duration: float, memory: int, used: int, init: float | None = None) -> str:
    line = (
        f"REPORT RequestId: r\tDuration: {duration} ms\tBilled Duration: {int(duration) + 1} ms\t"
        f"Memory Size: {memory} MB\tMax Memory Used: {used} MB\t"
    )
    return line + (f"Init Duration: {init} ms\t" if init else "")


def answer(name: str) -> Any:
    return json.loads((FIXTURES / "responses" / name).read_text())


NEWSLETTER_OK = {"statusCode": 200, "body": {"status": "success", "items_selected": 3, "s3_paths": {}}}


def real_record(scale: float = 1.0, selected: int = 3) -> RunRecord:
    """A run built from the real ingest and normalize-score answers (and a newsletter answer like the real outputs)."""
    answers = [
        ("ingest", answer("ingest_ok.json"), report_line(18350 * scale, 512, 120, 850.5)),
        ("normalize-score", answer("normalize_score_ok.json"), report_line(83723 * scale, 1024, 300)),
        (
            "newsletter",
            {**NEWSLETTER_OK, "body": {**NEWSLETTER_OK["body"], "items_selected": selected}},
            report_line(9000 * scale, 512, 150),
        ),
    ]
    steps, at = [], START
    for step, payload, log in answers:
        invocation = Invocation(f"vectora-inbox-{step}-v2-dev", 200, None, payload, log, f"req-{step}", "$LATEST")
        duration = timedelta(milliseconds=float(log.split("Duration: ")[1].split(" ms")[0]) + 400)
        steps.append(step_result(step, invocation, at, at + duration))
        at += duration + timedelta(milliseconds=50)
    outputs = (OutputCheck("ingest", "s3://vectora-inbox-data-dev/ingested/x/items.json", 12860, True),)
    return RunRecord(
        "20261126T080000Z-dev-abcd",
        "lai_weekly_v4",
        "dev",
        "AWS dev (eu-west-3)",
        None,
        "passed",
        START.isoformat(),
        at.isoformat(),
        "ab" * 32,
        {"client_id": "lai_weekly_v4"},
        tuple(steps),
        outputs,
        exit_code=0,
        region="eu-west-3",
        functions={"normalize-score": {"Architectures": ["arm64"]}},
    )


def failed_record() -> RunRecord:
    record = real_record()
    broken = replace(
        record.steps[1],
        status="failed",
        error="boom: FunctionError Unhandled",
        log_tail="START\nTraceback: boom\nEND\n",
        counts={},
        billed_duration_ms=None,
    )
    return replace(record, status="failed", steps=(record.steps[0], broken), error=broken.error, exit_code=1)


def test_the_funnel_comes_from_the_real_answers_with_rates() -> None:
    stages = {s.label: s for s in funnel(real_record())}
    assert [stages[k].count for k in ("ingested", "final after dedup", "normalized", "matched", "selected")] == [
        16,
        15,
        15,
        0,
        3,
    ]
    assert stages["final after dedup"].of_previous == pytest.approx(15 / 16)
    assert stages["matched"].of_first == 0 and stages["ingested"].of_first == 1


def test_cost_is_requests_plus_billed_gb_seconds_at_each_architecture_price() -> None:
    estimate = cost(real_record(), "eu-west-3")
    normalize = next(c for c in estimate.steps if c.step == "normalize-score")
    assert normalize.architecture == "arm64"
    assert normalize.gb_seconds == pytest.approx(83.724 * 1.0)
    assert normalize.usd == pytest.approx(0.2e-6 + 83.724 * 0.0000133334)
    assert estimate.usd == pytest.approx(sum(c.usd for c in estimate.steps))
    assert (
        "Lambda cost only; Bedrock not included" in estimate.note and "aws.amazon.com/lambda/pricing" in estimate.note
    )


def test_markdown_report_shows_units_funnel_cost_and_context() -> None:
    text = render_markdown(real_record(), About("compare matching fix", "lai_weekly"))
    assert "✅ PASSED" in text and "compare matching fix" in text and "| template | lai_weekly |" in text
    assert "| 2 | normalize-score | `vectora-inbox-normalize-score-v2-dev` | passed | 83.72 s | 83.72 s | n/a |" in text
    assert "| 300 / 1024 MB |" in text
    assert "| matched | 0 | 0 % | 0 % |" in text
    assert "12.6 KiB" in text and "## Estimated cost" in text


def test_a_failed_run_shows_its_error_and_log_tail_and_na_for_missing_metrics() -> None:
    text = render_markdown(failed_record(), About(full_logs=(("normalize-score", "logs/normalize-score.log"),)))
    assert "❌ FAILED" in text and "boom: FunctionError Unhandled" in text and "Traceback: boom" in text
    assert "| selected | n/a | n/a | n/a |" in text
    assert "Full CloudWatch log of normalize-score: `logs/normalize-score.log`" in text


def test_a_record_with_nothing_known_renders_everywhere() -> None:
    empty = RunRecord(
        "r",
        "x_v1",
        "dev",
        "t",
        None,
        "unknown",
        START.isoformat(),
        None,
        None,
        {},
        (StepResult("ingest", "fn", "unknown", START.isoformat()),),
    )
    for text in (render_markdown(empty), render_html(empty), render_junit(empty), render_workflow_log(empty)):
        assert text
    assert "n/a" in render_markdown(empty)


def cases_of(xml: str) -> dict[tuple[str, str], ET.Element]:
    return {(c.get("classname"), c.get("name")): c for c in ET.fromstring(xml).find("testsuite").findall("testcase")}


def test_junit_lists_every_testcase_of_every_step_and_counts_a_failure_once() -> None:
    record = failed_record()
    suite = ET.fromstring(render_junit(record)).find("testsuite")
    cases = cases_of(render_junit(record))
    assert list(cases)[:3] == [
        ("vectora_e2e.dev", "run"),
        ("vectora_e2e.dev.ingest", "answer"),
        ("vectora_e2e.dev.ingest", "output items.json"),
    ]
    assert len(cases) == 1 + 3 + 5 + 13 and suite.get("tests") == str(len(cases))  # run, answers, outputs, checks
    failure = cases[("vectora_e2e.dev.normalize-score", "answer")].find("failure")
    assert (suite.get("failures"), suite.get("errors")) == ("1", "0") and "boom" in failure.get("message")
    assert cases[("vectora_e2e.dev.newsletter", "answer")].find("skipped").get("message") == (
        "not reached: step normalize-score did not pass"
    )
    assert cases[("vectora_e2e.dev.normalize-score", "check items_curated")].find("skipped") is not None
    assert suite.get("skipped") == str(sum(c.find("skipped") is not None for c in cases.values()))
    assert all(float(c.get("time")) >= 0 for c in cases.values()) and float(suite.get("time")) > 0


def test_a_step_failed_by_its_check_fails_that_check_alone() -> None:
    record = real_record()
    check = CheckResult("newsletter", "items_selected", 0, ">= 1", "fail", False, "items_selected: 0, expected >= 1")
    failed = replace(record.steps[2], status="failed", error="data check items_selected failed")
    record = replace(record, status="failed", steps=(*record.steps[:2], failed), checks=(check,), exit_code=1)
    suite = ET.fromstring(render_junit(record)).find("testsuite")
    cases = cases_of(render_junit(record))
    assert suite.get("failures") == "1" and cases[("vectora_e2e.dev.newsletter", "answer")].find("failure") is None
    assert cases[("vectora_e2e.dev.newsletter", "check items_selected")].find("failure").get("message") == check.message


def test_a_run_that_failed_before_any_step_is_one_error_on_the_run_testcase() -> None:
    record = replace(real_record(), status="failed", steps=(), outputs=(), error="function x not found", exit_code=3)
    suite = ET.fromstring(render_junit(record)).find("testsuite")
    assert (suite.get("failures"), suite.get("errors")) == ("0", "1")
    assert cases_of(render_junit(record))[("vectora_e2e.dev", "run")].find("error").get("message") == (
        "function x not found"
    )


def test_junit_names_hold_no_run_values_and_xml_stays_well_formed_for_any_text() -> None:
    hostile = "\x1b[31mred\x1b[0m \x07 bell \x00 nul \x9b csi \ud800 lone \ufffe"
    record = replace(failed_record(), client_id="lai_weekly_v77", run_id="20270101T000000Z-dev-ffff")
    broken = replace(record.steps[1], error=hostile, log_tail=hostile)
    record = replace(record, steps=(record.steps[0], broken), error=hostile)
    xml = visible(render_junit(record))
    root = ET.fromstring(xml.encode("utf-8"))  # well-formed, whatever the Lambda said
    assert set(cases_of(xml)) == set(cases_of(render_junit(failed_record())))
    names = " ".join(f"{c} {n}" for c, n in cases_of(xml))
    assert "lai_weekly" not in names and "2026" not in names and "-v2-" not in names
    assert "\\x1b[31mred" in root.find("testsuite/testcase[@classname='vectora_e2e.dev.normalize-score']/failure").text


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.bars: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "g" and found.get("class") == "timeline-bar":
            self.bars.append(found["data-step"] or "")
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]


def test_the_html_page_has_one_timeline_bar_per_step_and_no_external_asset() -> None:
    page = render_html(real_record(), About("a <b>purpose</b>", "lai_weekly"))
    parser = PageParser()
    parser.feed(page)
    assert parser.bars == ["ingest", "normalize-score", "newsletter"]
    assert all(not link.startswith(("http:", "https:", "//")) for link in parser.links)
    assert "<b>purpose</b>" not in page and "&lt;b&gt;purpose" in page
    assert 'class="init"' in page  # the cold start is shaded apart


def png_colours(path: Path) -> int:
    """How many distinct byte values the PNG's decoded pixel rows hold: 1-2 for a blank page, many for content."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = b"", 8
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        if data[at + 4 : at + 8] == b"IDAT":
            chunks += data[at + 8 : at + 8 + length]
        at += 12 + length
    return len(set(zlib.decompress(chunks)))


def test_the_html_page_renders_in_a_headless_browser(tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs it")
        pytest.skip("no chromium on this machine: `apt-get install chromium` to run the browser check")
    page = tmp_path / "report.html"
    page.write_text(render_html(real_record(), About("browser check", "lai_weekly")))
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000
    assert png_colours(shot) > 50


def test_the_workflow_log_holds_each_steps_log_in_order() -> None:
    log = render_workflow_log(failed_record(), {"normalize-score": "full cloudwatch line\n"})
    lines = log.splitlines()
    assert "started" in lines[0] and "failed (exit 1)" in lines[-1]
    assert [i for i, line in enumerate(lines) if "invoking" in line] == sorted(
        i for i, line in enumerate(lines) if "invoking" in line
    )
    assert any("[cloudwatch] | full cloudwatch line" in line for line in lines)
    assert any("ingest [tail] | REPORT" in line for line in lines)


def test_compare_shows_the_runs_side_by_side_with_deltas_against_the_first() -> None:
    records = [
        replace(real_record(scale), client_id=f"lai_weekly_v{n}") for n, scale in ((11, 1.0), (12, 0.5), (13, 2.0))
    ]
    records[2] = replace(real_record(2.0, selected=5), client_id="lai_weekly_v13")
    text = render_compare(records)
    assert "| | `lai_weekly_v11` | `lai_weekly_v12` | `lai_weekly_v13` |" in text
    row = next(line for line in text.splitlines() if line.startswith("| normalize-score duration (ms)"))
    assert row == "| normalize-score duration (ms) | 83723 | 41862 (-41862) | 167446 (+83723) |"
    assert "| selected (items) | 3 | 3 (+0) | 5 (+2) |" in text
    assert "lai_weekly_v13" in render_compare_html(records)


def test_compare_shows_each_runs_checks_and_names_those_that_did_not_hold() -> None:
    held = CheckResult("ingest", "items_final", 15, ">= 1", "fail", True)
    warned = CheckResult("normalize-score", "not_normalized_share", 0.2, "<= 10%", "warn", False, "2 of 10 items")
    failed = CheckResult("newsletter", "items_selected", 0, ">= 1", "fail", False, "items_selected: 0, expected >= 1")
    records = [
        replace(real_record(), client_id="lai_weekly_v11", checks=(held,)),
        replace(real_record(), client_id="lai_weekly_v12", checks=(held, warned, failed)),
    ]
    row = next(line for line in render_compare(records).splitlines() if line.startswith("| checks"))
    assert row.startswith("| checks | 1/1 held | 1/3 held, 1 warning; normalize-score.not_normalized_share ⚠️ WARN")
    assert "newsletter.items_selected ❌ FAIL (0)" in row
    assert "1/3 held, 1 warning" in render_compare_html(records)


def test_the_summary_lists_each_context_with_its_envs() -> None:
    text = render_summary(
        [
            ContextRow("lai_weekly_v4", "p", "passed", {"local": "passed", "dev": "failed"}, summarize(real_record())),
            ContextRow("lai_weekly_v5", "q", "new", {}, None),
        ]
    )
    row = "| `lai_weekly_v4` | p | dev: failed, local: passed | 20261126T080000Z-dev-abcd | ✅ PASSED | 112.42 s |"
    assert row + " $0.0013 |" in text  # total time and cost from the run's summary, not its run.json
    assert "| `lai_weekly_v5` | q | n/a | n/a | n/a | n/a | n/a |" in text


def test_a_record_round_trips_through_run_json() -> None:
    record = failed_record()
    assert RunRecord.from_json(json.loads(json.dumps(record.to_json()))) == record


def test_a_run_on_an_emulated_env_is_never_shown_as_a_pass_on_the_real_one() -> None:
    emulated_run = replace(real_record(), endpoint="http://127.0.0.1:4566")
    assert "# E2E run 20261126T080000Z-dev-abcd: ✅ PASSED on dev(emulated)" in render_markdown(emulated_run)
    html = render_html(emulated_run)
    assert "ON DEV(EMULATED), NOT THE REAL DEV" in html
    assert "NOT THE REAL" not in render_html(real_record())
    compare = render_compare([emulated_run, replace(real_record(), client_id="lai_weekly_v5")])
    assert "| env | dev(emulated) | dev |" in compare


def test_a_failed_runs_html_shows_its_error_and_log_tail_before_any_figure() -> None:
    page = render_html(failed_record())
    problem = page.index("What went wrong")
    assert problem < page.index("Traceback: boom") < page.index("<h2>Timeline</h2>") < page.index("Estimated cost")
    assert "What went wrong" not in render_html(real_record())


def test_the_html_page_shows_times_to_the_second_and_keeps_figures_on_one_line() -> None:
    record = replace(real_record(), started_at="2026-11-26T08:00:00.123456+00:00")
    page = render_html(record)
    assert "<td>started</td><td>2026-11-26 08:00:00 UTC</td>" in page and ".123456" not in page
    assert "td.num{text-align:right;font-variant-numeric:tabular-nums;\nwhite-space:nowrap}" in page
    assert "<td class=num>120 / 512 MB</td>" in page  # memory used / size is a figure too


def test_compare_shows_each_runs_payload_so_a_longer_period_is_not_read_as_a_regression() -> None:
    week = replace(real_record(2.0), client_id="lai_weekly_v12", event={"client_id": "x", "period_days": 7})
    records = [real_record(), week]
    assert '| payload | `none` | `{"period_days": 7}` |' in render_compare(records)
    assert "<td>payload</td><td class=num><code>none</code></td><td class=num><code>{&quot;period_days&quot;: 7}" in (
        render_compare_html(records)
    )
