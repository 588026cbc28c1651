"""The runner: the steps in order, each held to its answer, outputs, data and the chain; stops at the first failure.

Pure: it gets an invoker, an output verifier, a reader and a clock, so tests drive it without AWS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from tasks.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PASSED, EXIT_UNKNOWN, OutcomeUnknown, ToolkitError
from tasks.pipeline import checks
from tasks.pipeline.checks import Chain, CheckResult, Expectations
from tasks.pipeline.judging import step_result
from tasks.pipeline.records import Invocation, OutputCheck, RunRecord, StepResult
from tasks.settings import STEPS

DRY_RUN_NOTE = "dry run (event dry_run: true): ingest writes nothing, so output, data and chain checks were skipped"


Invoker = Callable[[str, str, dict[str, Any]], Invocation]
Verifier = Callable[[StepResult, datetime], list[OutputCheck]]
Reader = Callable[[str], bytes]


def file_name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


@dataclass
class Runner:
    """Runs steps in order, holds each to its outputs, its data and the chain; stops at the first failure.

    A step passes when its answer says success, each output it must write exists and is fresh (verify), and the
    data-level checks at level fail hold on its answer and its parsed outputs (read); see tasks/checks.py.
    """

    invoke: Invoker
    verify: Verifier
    read: Reader
    clock: Callable[[], datetime]
    expectations: Expectations = checks.DEFAULTS
    on_step_start: Callable[[int, str, str], None] = lambda index, step, name: None
    on_step_end: Callable[[int, StepResult, list[CheckResult]], None] = lambda index, result, found: None

    def run(
        self,
        record: RunRecord,
        functions: dict[str, str],
        steps: tuple[str, ...] = STEPS,
        earlier: tuple[StepResult, ...] = (),
    ) -> RunRecord:
        """Invoke each step's function; return the finished record. earlier: passed steps a resumed run reuses."""
        dry_run = bool(record.event.get("dry_run"))
        chain = Chain()
        for result in earlier:
            chain = checks.chain_after(result.step, result.body or {}, chain)
        results: list[StepResult] = []
        outputs: list[OutputCheck] = []
        found: list[CheckResult] = []
        status, error, exit_code = "passed", None, EXIT_PASSED
        for index, step in enumerate(steps, start=1):
            name = functions[step]
            self.on_step_start(index, step, name)
            started = self.clock()
            event = record.event
            if step == "newsletter" and not dry_run:
                event = checks.newsletter_event(record.event, chain, started.strftime("%Y/%m/%d"))
            step_checks: list[CheckResult] = []
            try:
                result = step_result(step, self.invoke(step, name, event), started, self.clock())
                if event != record.event:
                    result = replace(result, event=event)
                if result.status == "passed" and not dry_run:
                    result, step_outputs, step_checks = self._hold(result, started, chain)
                    outputs += step_outputs
                    chain = checks.chain_after(step, result.body or {}, chain)
            except KeyboardInterrupt:
                result = StepResult(
                    step,
                    name,
                    "interrupted",
                    started.isoformat(),
                    self.clock().isoformat(),
                    error=f"interrupted while waiting for {name}; the Lambda may still complete",
                )
                status, exit_code = "interrupted", EXIT_INTERRUPTED
            except OutcomeUnknown as err:
                result = StepResult(
                    step, name, "unknown", started.isoformat(), self.clock().isoformat(), error=str(err)
                )
                status, exit_code = "unknown", EXIT_UNKNOWN
            except ToolkitError as err:
                result = StepResult(step, name, "failed", started.isoformat(), self.clock().isoformat(), error=str(err))
                status, exit_code = "failed", err.exit_code
            results.append(result)
            found += step_checks
            self.on_step_end(index, result, step_checks)
            if result.status == "failed" and status == "passed":
                status, exit_code = "failed", EXIT_FAILED
            if status != "passed":
                error = result.error
                break
        return replace(
            record,
            status=status,
            finished_at=self.clock().isoformat(),
            steps=tuple(results),
            outputs=tuple(outputs),
            checks=tuple(found),
            expectations=self.expectations.source,
            notes=(*record.notes, DRY_RUN_NOTE) if dry_run else record.notes,
            error=error,
            exit_code=exit_code,
        )

    def _hold(
        self, result: StepResult, started: datetime, chain: Chain
    ) -> tuple[StepResult, list[OutputCheck], list[CheckResult]]:
        """Verify the outputs of an answered step, then its data; the result fails on the first that does not hold."""
        outputs = self.verify(result, started)
        bad = [o for o in outputs if not o.ok]
        if bad:
            return replace(result, status="failed", error=f"output check failed: {bad[0].error}"), outputs, []
        files = {file_name(o.uri): self.read(o.uri) for o in outputs}
        found = checks.check_step(result.step, result.body or {}, files, chain, self.expectations)
        failed = [c for c in found if c.failed]
        if failed:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            error = f"data check {failed[0].name} failed: {failed[0].message}{more}"
            result = replace(result, status="failed", error=error)
        return result, outputs, found
