"""Render a run's consolidated workflow.log: what the toolkit did and each step's log, in order. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from tasks.pipeline.records import RunRecord


def render_workflow_log(record: RunRecord, full_logs: Mapping[str, str] | None = None) -> str:
    """One timestamped log of the run; a step's full CloudWatch log (when saved) replaces its log tail."""
    full_logs = full_logs or {}
    lines = [
        f"{record.started_at} toolkit  run {record.run_id} started: {record.client_id} on {record.env} "
        f"({record.target}), event {record.event}",
    ]
    if record.resumed_from:
        lines.append(f"{record.started_at} toolkit  resumed from run {record.resumed_from}")
    lines += [f"{record.started_at} toolkit  note: {note}" for note in record.notes]
    outputs_by_step: dict[str, list[str]] = {}
    for output in record.outputs:
        state = f"ok, {output.size} bytes" if output.ok else f"FAILED: {output.error}"
        outputs_by_step.setdefault(output.step, []).append(f"output {output.uri}: {state}")
    for check in record.checks:
        state = "ok" if check.ok else f"{check.level.upper()}: {check.message}"
        outputs_by_step.setdefault(check.step, []).append(f"check {check.name} (expected {check.expected}): {state}")
    for index, step in enumerate(record.steps, start=1):
        lines.append(f"{step.started_at} toolkit  step {index} {step.step}: invoking {step.function_name}")
        source, text = ("cloudwatch", full_logs[step.step]) if step.step in full_logs else ("tail", step.log_tail)
        for line in (text or "").splitlines():
            lines.append(f"{step.finished_at or step.started_at} {step.step} [{source}] | {line}")
        finished = step.finished_at or step.started_at
        summary = f"{step.status}" + (f" in {step.wall_ms / 1000:.2f} s" if step.wall_ms is not None else "")
        counts = " ".join(f"{k}={v}" for k, v in step.counts.items())
        lines.append(f"{finished} toolkit  step {index} {step.step}: {summary} {counts}".rstrip())
        if step.error:
            lines.append(f"{finished} toolkit  step {index} {step.step}: {step.error}")
        lines += [f"{finished} toolkit  {entry}" for entry in outputs_by_step.pop(step.step, [])]
    for name, entries in outputs_by_step.items():  # outputs re-verified for steps a resumed run did not invoke
        lines += [f"{record.started_at} toolkit  earlier step {name}: {entry}" for entry in entries]
    finished = record.finished_at or record.started_at
    lines.append(f"{finished} toolkit  run {record.run_id} {record.status} (exit {record.exit_code})")
    return "\n".join(lines) + "\n"
