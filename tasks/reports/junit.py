"""Render a RunRecord as JUnit XML for CI: one testsuite per run; per step a testcase for its answer, each output and
each data-level check. Pure.

Names and class names are the same in every run of a context (`vectora_e2e.dev.ingest` / `check items_final`), so a
CI follows a test from one night to the next: run ids, dates, counts, function names and the client_id go in the
messages and the properties. Every testcase of every step is listed in every run: what was not reached is skipped,
and each failure is counted once (a step failed by a check fails that check's testcase, not its answer's too).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime

from tasks.pipeline.checks import DEFAULT_RULES, OUTPUT_FILES, CheckResult
from tasks.pipeline.records import OutputCheck, RunRecord, StepResult
from tasks.pipeline.runner import file_name
from tasks.reports.figures import total_seconds
from tasks.settings import STEPS

SUITE = "vectora_e2e"


def _step_seconds(step: StepResult) -> float:
    if step.wall_ms is not None:
        return step.wall_ms / 1000
    return (step.duration_ms or 0) / 1000


class _Suite:
    """The testsuite being built, with its counts."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.element = ET.Element("testsuite", name=f"{SUITE}.{record.env}")
        self.counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        _properties(
            self.element,
            run_id=record.run_id,
            client_id=record.client_id,
            env=record.env,
            target=record.target,
            endpoint=record.endpoint or "",
            config_sha256=record.config_sha256 or "",
            payload=record.payload,
            status=record.status,
            error=record.error or "",
        )

    def case(self, classname: str, name: str, seconds: float = 0.0) -> ET.Element:
        self.counts["tests"] += 1
        return ET.SubElement(self.element, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")

    def outcome(self, testcase: ET.Element, kind: str, message: str, text: str = "", type_: str = "") -> None:
        """Mark testcase failure, error or skipped (counted once each)."""
        self.counts["skipped" if kind == "skipped" else f"{kind}s"] += 1
        element = ET.SubElement(testcase, kind, {"message": message, **({"type": type_} if type_ else {})})
        if text:
            element.text = text


def _properties(parent: ET.Element, **values: str | None) -> None:
    properties = ET.SubElement(parent, "properties")
    for name, value in values.items():
        if value is not None:
            ET.SubElement(properties, "property", name=name, value=str(value))


def _not_reached(record: RunRecord, step: str) -> str:
    """Why a step has no result in this run."""
    if record.resumed_from and record.steps and STEPS.index(step) < STEPS.index(record.steps[0].step):
        return f"not invoked: resumed from run {record.resumed_from}"
    invoked = [s for s in record.steps if s.status != "passed"]
    return f"not reached: step {invoked[0].step} did not pass" if invoked else "not reached: the run stopped before it"


def _answer(suite: _Suite, classname: str, result: StepResult | None, failed_below: bool, skipped: str) -> None:
    if result is None:
        suite.outcome(suite.case(classname, "answer"), "skipped", skipped)
        return
    testcase = suite.case(classname, "answer", _step_seconds(result))
    _properties(testcase, function=result.function_name, request_id=result.request_id, started_at=result.started_at)
    if result.status == "failed" and not failed_below:
        suite.outcome(testcase, "failure", result.error or "failed", result.log_tail or "", "StepFailed")
    elif result.status not in ("passed", "failed"):
        suite.outcome(testcase, "error", result.error or result.status, result.log_tail or "", result.status)


def _output(suite: _Suite, classname: str, name: str, found: OutputCheck | None, skipped: str) -> None:
    testcase = suite.case(classname, f"output {name}")
    if found is None:
        suite.outcome(testcase, "skipped", skipped)
        return
    _properties(testcase, uri=found.uri, size=None if found.size is None else str(found.size))
    if not found.ok:
        suite.outcome(testcase, "failure", found.error or "output check failed", type_="OutputCheck")


def _check(suite: _Suite, classname: str, name: str, found: CheckResult | None, skipped: str) -> None:
    testcase = suite.case(classname, f"check {name}")
    if found is None:
        suite.outcome(testcase, "skipped", skipped)
        return
    _properties(testcase, observed=str(found.observed), expected=found.expected, level=found.level)
    if found.failed:
        suite.outcome(testcase, "failure", found.message, type_="DataCheck")
    elif found.warned:  # a warning is not a failure: CI shows it in the test's output
        ET.SubElement(testcase, "system-out").text = f"WARNING: {found.message}"


def _step(suite: _Suite, step: str) -> None:
    record = suite.record
    classname = f"{SUITE}.{record.env}.{step}"
    result = next((s for s in record.steps if s.step == step), None)
    outputs = {file_name(o.uri): o for o in record.outputs if o.step == step}
    found = {c.name: c for c in record.checks if c.step == step}
    failed_below = any(not o.ok for o in outputs.values()) or any(c.failed for c in found.values())
    not_reached = _not_reached(record, step) if result is None else "not run"
    _answer(suite, classname, result, failed_below, not_reached)
    if result is not None and result.status != "passed" and not failed_below:
        not_reached = "not run: the answer did not pass"
    elif result is not None and record.event.get("dry_run"):
        not_reached = "not run: a dry run skips the output, data and chain checks"
    for name in OUTPUT_FILES[step]:
        _output(suite, classname, name, outputs.get(name), not_reached)
    if any(not o.ok for o in outputs.values()):
        not_reached = "not run: an output check failed"
    for check_step, name in DEFAULT_RULES:
        if check_step == step:
            _check(suite, classname, name, found.get(name), not_reached)


def render_junit(record: RunRecord) -> str:
    """The run's junit.xml, as Jenkins', GitHub's and GitLab's JUnit readers expect (times in seconds)."""
    suite = _Suite(record)
    setup = suite.case(f"{SUITE}.{record.env}", "run")
    for step in STEPS:
        _step(suite, step)
    if record.status != "passed" and not (suite.counts["failures"] or suite.counts["errors"]):
        # failed before any step could say why (a missing function, credentials): the run's own testcase says it
        suite.outcome(setup, "error", record.error or record.status, type_=record.status)
    element = suite.element
    for name, value in suite.counts.items():
        element.set(name, str(value))
    element.set("time", f"{total_seconds(record) or 0:.3f}")
    element.set("timestamp", datetime.fromisoformat(record.started_at).strftime("%Y-%m-%dT%H:%M:%S"))
    root = ET.Element("testsuites", name="vectora-inbox-e2e", time=element.get("time", "0"))
    for name in ("tests", "failures", "errors", "skipped"):
        root.set(name, element.get(name, "0"))
    root.append(element)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
