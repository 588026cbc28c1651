"""What "a step passed" means, REPORT parsing, and the runner's stop-at-first-failure, on the real answers."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tasks.errors import OutcomeUnknown
from tasks.pipeline.checks import DEFAULTS, Expectations
from tasks.pipeline.judging import judge, step_result
from tasks.pipeline.records import Invocation, OutputCheck, RunRecord, StepResult
from tasks.pipeline.report_line import decode_log_tail, parse_report
from tasks.pipeline.runner import Runner
from tests.conftest import FIXTURES

REPORT = (
    "REPORT RequestId: 3f1c\tDuration: 83723.45 ms\tBilled Duration: 83724 ms\tMemory Size: 1024 MB\t"
    "Max Memory Used: 312 MB\tInit Duration: 1234.50 ms\t"
)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / "responses" / name).read_text())


def answer(payload: Any, function_error: str | None = None, log: str = "") -> Invocation:
    return Invocation("fn", 200, function_error, payload, log, "req-1", "$LATEST")


def test_report_line_is_parsed_into_numbers() -> None:
    report = parse_report(f"START RequestId: 3f1c\nsome log\nEND RequestId: 3f1c\n{REPORT}\n")
    assert report.duration_ms == 83723.45
    assert report.billed_duration_ms == 83724
    assert report.memory_size_mb == 1024
    assert report.max_memory_used_mb == 312
    assert report.init_duration_ms == 1234.5


def test_missing_report_figures_are_none_not_zero() -> None:
    report = parse_report("REPORT RequestId: x\tDuration: 5.00 ms\tBilled Duration: 5 ms\tMemory Size: 128 MB\t")
    assert report.init_duration_ms is None and report.max_memory_used_mb is None
    assert parse_report("no report here").duration_ms is None


def test_log_tail_decoding_tolerates_absence_and_garbage() -> None:
    assert decode_log_tail(base64.b64encode(b"hello").decode()) == "hello"
    assert decode_log_tail(None) == ""
    assert decode_log_tail("%%%not base64") == ""


def test_the_real_ingest_and_normalize_answers_pass() -> None:
    assert judge("ingest", answer(fixture("ingest_ok.json"))) == (None, 200, "success")
    assert judge("normalize-score", answer(fixture("normalize_score_ok.json"))) == (None, 200, "completed")


def test_the_real_import_error_fails_with_its_type_and_message() -> None:
    error, _, _ = judge("ingest", answer(fixture("unhandled_import_error.json"), function_error="Unhandled"))
    assert "FunctionError Unhandled" in error
    assert "Runtime.ImportModuleError" in error and "No module named 'requests'" in error


@pytest.mark.parametrize(
    ("step", "payload", "expected"),
    [
        ("ingest", {"statusCode": 200, "body": {"status": "error", "error": "config missing"}}, "status 'error'"),
        ("ingest", {"statusCode": 500, "body": {"error": "boom"}}, "statusCode 500"),
        ("ingest", {"statusCode": 500, "body": {"error": "ValueError", "message": "bad key"}}, "ValueError: bad key"),
        ("newsletter", {"statusCode": 200, "body": {"status": "no_items"}}, "no_items"),
        ("ingest", {"body": {}}, "without a statusCode"),
        ("ingest", "not json", "without a statusCode"),
        ("ingest", {"statusCode": 200, "body": json.dumps({"status": "error", "error": "x"})}, "status 'error'"),
    ],
)
def test_answers_that_hide_a_failure_are_failures(step: str, payload: Any, expected: str) -> None:
    error, _, _ = judge(step, answer(payload))
    assert error is not None and expected in error


def test_step_result_carries_counts_and_report_figures() -> None:
    start = datetime(2026, 11, 26, tzinfo=UTC)
    result = step_result(
        "normalize-score", answer(fixture("normalize_score_ok.json"), log=REPORT), start, start + timedelta(seconds=84)
    )
    assert result.status == "passed"
    assert result.counts == {"items_input": 15, "items_normalized": 15, "items_matched": 0, "items_scored": 15}
    assert result.duration_ms == 83723.45 and result.wall_ms == 84000


class Scripted:
    """An invoker that answers from a script and records which functions it was asked to run."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, step: str, name: str, event: dict[str, Any]) -> Invocation:
        self.calls.append(step)
        outcome = self.answers[step]
        if isinstance(outcome, BaseException):
            raise outcome
        return Invocation(name, 200, None, outcome, "", f"req-{step}", "$LATEST")


def run(answers: dict[str, Any], checks_ok: bool = True) -> tuple[RunRecord, Scripted]:
    clock = iter(datetime(2026, 11, 26, tzinfo=UTC) + timedelta(seconds=s) for s in range(100))
    invoker = Scripted(answers)

    def verify(result: StepResult, started: datetime) -> list[OutputCheck]:
        return [
            OutputCheck(
                result.step,
                f"s3://b/{result.step}",
                10 if checks_ok else None,
                checks_ok,
                error=None if checks_ok else f"s3://b/{result.step} not found",
            )
        ]

    record = RunRecord(
        "r",
        "lai_weekly_v1",
        "local",
        "t",
        None,
        "running",
        "2026-11-26T00:00:00+00:00",
        None,
        None,
        {"client_id": "lai_weekly_v1"},
    )
    functions = {s: f"fn-{s}" for s in ("ingest", "normalize-score", "newsletter")}
    # The data-level checks are tested on their own (test_checks.py); here they only warn.
    lenient = Expectations({key: replace(rule, level="warn") for key, rule in DEFAULTS.rules.items()})
    runner = Runner(invoker, verify, lambda uri: b"[]", lambda: next(clock), lenient)
    return runner.run(record, functions), invoker


OK = {"statusCode": 200, "body": {"status": "success"}}


def test_the_runner_runs_every_step_in_order_when_all_pass() -> None:
    record, invoker = run({"ingest": OK, "normalize-score": OK, "newsletter": OK})
    assert invoker.calls == ["ingest", "normalize-score", "newsletter"]
    assert (record.status, record.exit_code, len(record.outputs)) == ("passed", 0, 3)
    assert record.checks and all(c.level == "warn" for c in record.checks)


def test_the_runner_stops_at_the_first_failure() -> None:
    failing = {"statusCode": 200, "body": {"status": "error", "error": "no sources"}}
    record, invoker = run({"ingest": OK, "normalize-score": failing, "newsletter": OK})
    assert invoker.calls == ["ingest", "normalize-score"]
    assert (record.status, record.exit_code) == ("failed", 1)
    assert "no sources" in record.error


def test_a_missing_output_fails_the_step_and_stops() -> None:
    record, invoker = run({"ingest": OK, "normalize-score": OK, "newsletter": OK}, checks_ok=False)
    assert invoker.calls == ["ingest"]
    assert record.steps[0].status == "failed" and "not found" in record.error


def test_an_unknown_outcome_is_recorded_as_unknown_with_exit_4() -> None:
    record, invoker = run({"ingest": OutcomeUnknown("no answer"), "normalize-score": OK, "newsletter": OK})
    assert invoker.calls == ["ingest"]
    assert (record.status, record.exit_code, record.steps[0].status) == ("unknown", 4, "unknown")


def test_an_interrupt_is_recorded_as_interrupted_with_exit_130() -> None:
    record, _ = run({"ingest": OK, "normalize-score": KeyboardInterrupt(), "newsletter": OK})
    assert (record.status, record.exit_code) == ("interrupted", 130)
    assert "may still complete" in record.steps[1].error


@pytest.mark.parametrize(
    ("codes", "expected"),
    [([0, 0], 0), ([0, 1, 4], 4), ([1, 4, 3], 3), ([3, 130, 1], 130), ([1, 2], 2), ([], 0)],
)
def test_the_worst_exit_code_wins(codes: list[int], expected: int) -> None:
    from tasks.flows.parallel import worst

    assert worst(codes) == expected


def test_a_cut_log_tail_starts_at_its_first_whole_line() -> None:
    """A 4 KB tail cut inside a line (perhaps inside a secret, which masking cannot then recognize) drops it."""
    log = ("x" * 5000 + " secret-part\n" + "whole line\n").encode()[-4096:]
    assert decode_log_tail(base64.b64encode(log).decode()) == "whole line\n"
    assert decode_log_tail(base64.b64encode(b"short\nlog\n").decode()) == "short\nlog\n"
