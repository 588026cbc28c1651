"""Render a RunRecord as JUnit XML for CI: one testsuite per run, a testcase per step, output and data check. Pure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime

from tasks.pipeline.records import RunRecord, StepResult
from tasks.reports.figures import total_seconds
from tasks.settings import STEPS


def _step_seconds(step: StepResult) -> float:
    if step.wall_ms is not None:
        return step.wall_ms / 1000
    return (step.duration_ms or 0) / 1000


def render_junit(record: RunRecord) -> str:
    """The run's junit.xml, as Jenkins' and GitLab's JUnit readers expect (times in seconds)."""
    classname = f"vectora_e2e.{record.env}.{record.client_id}"
    suite = ET.Element("testsuite", name=f"{record.client_id} on {record.env} ({record.run_id})")
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("run_id", record.run_id),
        ("env", record.env),
        ("target", record.target),
        ("endpoint", record.endpoint or ""),
        ("config_sha256", record.config_sha256 or ""),
        ("status", record.status),
    ):
        ET.SubElement(properties, "property", name=name, value=value)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def case(name: str, seconds: float) -> ET.Element:
        counts["tests"] += 1
        return ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")

    for index, step in enumerate(record.steps, start=1):
        testcase = case(f"step {index} {step.step} ({step.function_name})", _step_seconds(step))
        if step.status == "failed":
            counts["failures"] += 1
            failure = ET.SubElement(testcase, "failure", message=step.error or "failed", type="StepFailed")
            failure.text = step.log_tail or step.error or ""
        elif step.status != "passed":
            counts["errors"] += 1
            ET.SubElement(testcase, "error", message=step.error or step.status, type=step.status)
    if record.steps and record.status != "passed":
        for name in STEPS[STEPS.index(record.steps[-1].step) + 1 :]:
            counts["skipped"] += 1
            skipped = case(f"step {STEPS.index(name) + 1} {name}", 0)
            ET.SubElement(skipped, "skipped", message="not run: an earlier step did not pass")
    for output in record.outputs:
        testcase = case(f"output {output.step} {output.uri}", 0)
        if not output.ok:
            counts["failures"] += 1
            ET.SubElement(testcase, "failure", message=output.error or "output check failed", type="OutputCheck")
    for check in record.checks:
        testcase = case(f"check {check.step} {check.name} (expected {check.expected})", 0)
        if check.failed:
            counts["failures"] += 1
            ET.SubElement(testcase, "failure", message=check.message, type="DataCheck")
        elif check.warned:  # a warning is not a failure: CI shows it in the test's output
            ET.SubElement(testcase, "system-out").text = f"WARNING: {check.message}"
    suite.set("tests", str(counts["tests"]))
    suite.set("failures", str(counts["failures"]))
    suite.set("errors", str(counts["errors"]))
    suite.set("skipped", str(counts["skipped"]))
    suite.set("time", f"{total_seconds(record) or 0:.3f}")
    suite.set("timestamp", datetime.fromisoformat(record.started_at).strftime("%Y-%m-%dT%H:%M:%S"))
    root = ET.Element(
        "testsuites",
        name="vectora-inbox-e2e",
        tests=suite.get("tests", "0"),
        failures=suite.get("failures", "0"),
        errors=suite.get("errors", "0"),
        time=suite.get("time", "0"),
    )
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
