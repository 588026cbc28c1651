"""A run's folder and its records: run.json written at start and at the end, report.md, the context's record."""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.contexts.files import run_lock, staged, write_atomic
from tasks.json_documents import json_bytes, json_safe
from tasks.contexts.records import RunSummary
from tasks.contexts.store import Context, ContextStore
from tasks.errors import EXIT_MEANINGS, ToolkitError, as_toolkit_error
from tasks.masking import mask, redact, secret_forms
from tasks.pipeline.records import RunRecord
from tasks.reports.figures import cost, total_seconds
from tasks.reports.html import render_html
from tasks.reports.junit import render_junit
from tasks.reports.format import About
from tasks.reports.markdown import render_markdown
from tasks.reports.workflow_log import render_workflow_log
from tasks.signals import interrupted_code
from tasks.visible import visible


def new_run_id(now: datetime, env: str) -> str:
    """A sortable, unique run id, e.g. 20261126T013323Z-local-3f9a."""
    return f"{now:%Y%m%dT%H%M%SZ}-{env}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class RunFolder:
    """Where one run's files live."""

    path: Path

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def report_md(self) -> Path:
        return self.path / "report.md"

    @property
    def report_html(self) -> Path:
        return self.path / "report.html"

    @property
    def outputs(self) -> Path:
        return self.path / "outputs"

    @property
    def logs(self) -> Path:
        """Full CloudWatch logs saved for failed steps, one <step>.log each."""
        return self.path / "logs"

    def full_logs(self) -> dict[str, Path]:
        return {p.stem: p for p in sorted(self.logs.glob("*.log"))}


def render_reports(
    folder: RunFolder, record: RunRecord, context: Context, secrets: tuple[str, ...] = ()
) -> dict[Path, bytes]:
    """report.md, report.html, junit.xml and workflow.log rendered from the record, by path.

    The record comes masked; the saved logs and the purpose are masked here, and so is what each renderer made of them.
    Control characters of foreign text are shown as escapes (tasks/visible.py): XML and HTML stay well-formed, and
    nothing reaches a terminal raw when a file is printed.
    """
    forms = secret_forms(secrets)
    logs = folder.full_logs()
    about = About(
        redact(context.purpose, forms), context.template, tuple((step, str(path)) for step, path in logs.items())
    )
    rendered = {
        "report.md": render_markdown(record, about),
        "report.html": render_html(record, about),
        "junit.xml": render_junit(record),
        "workflow.log": render_workflow_log(
            record, {s: redact(p.read_text(errors="replace"), forms) for s, p in logs.items()}
        ),
    }
    return {folder.path / name: visible(redact(text, forms)).encode("utf-8") for name, text in rendered.items()}


def write_reports(folder: RunFolder, record: RunRecord, context: Context, secrets: tuple[str, ...] = ()) -> list[Path]:
    """Write the reports rendered from the record (render_reports); return their paths."""
    files = render_reports(folder, record, context, secrets)
    for path, data in files.items():
        write_atomic(path, data)
    return list(files)


def summarize(record: RunRecord) -> RunSummary:
    """What context.json keeps of a run: enough to list and summarize it without reading its run.json."""
    return RunSummary(
        run_id=record.run_id,
        env=record.env,
        status=record.status,
        started_at=record.started_at,
        finished_at=record.finished_at,
        endpoint=None if record.env == "local" else record.endpoint,
        config_sha256=record.config_sha256,
        total_seconds=total_seconds(record),
        cost_usd=cost(record).usd,
        checks_held=sum(1 for c in record.checks if c.ok),
        checks_total=len(record.checks),
        warnings=len(record.warnings),
        failed_checks=tuple(f"{c.step}.{c.name}" for c in record.checks if c.failed),
        exit_code=record.exit_code,
    )


class RunRecorder:
    """Writes a run's record to its folder and to its context, each write atomic."""

    def __init__(self, store: ContextStore, context: Context, record: RunRecord, secrets: tuple[str, ...] = ()) -> None:
        self.store = store
        self.context = context
        self.folder = RunFolder(context.runs_dir / record.run_id)
        self.secrets = secrets

    def _masked(self, record: RunRecord) -> RunRecord:
        """The record as it is written: every secret value masked (in errors, bodies, log tails...), and every number
        JSON cannot hold (an answer's 1e999) a string, with a note saying where."""
        found: list[str] = []
        document = json_safe(mask(record.to_json(), secret_forms(self.secrets)), found=found)
        if found:
            shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
            note = f"numbers JSON cannot hold (NaN, Infinity) were written as strings: {shown}"
            document["notes"] = [*document["notes"], note]
        return RunRecord.from_json(document)

    def start(self, record: RunRecord) -> None:
        """Create the folder and record the run as running; if that fails (a full disk), nothing is left of it."""
        record = self._masked(record)
        self.folder.path.mkdir(parents=True)
        try:
            with staged({self.folder.run_json: json_bytes(record.to_json())}):
                self._record_in_context(record)
        except BaseException:
            shutil.rmtree(self.folder.path, ignore_errors=True)
            raise

    def finish(self, record: RunRecord, reports: bool = True) -> None:
        """Write the final run.json, the reports rendered from it (unless not reports) and the context's records.

        All are written aside first and renamed into place once the context's record is written: a full disk at any
        point leaves run.json and context.json saying the same (the run's start), never half of a new story.
        """
        record = self._masked(record)
        self.folder.path.mkdir(parents=True, exist_ok=True)
        files = {self.folder.run_json: json_bytes(record.to_json())}
        if reports:
            files |= render_reports(self.folder, record, self.context, self.secrets)
        with staged(files):
            self._record_in_context(record)

    def _record_in_context(self, record: RunRecord) -> None:
        summary = summarize(record)

        def change(context: Context) -> Context:
            runs = (*(r for r in context.runs if r.run_id != record.run_id), summary)
            context = replace(context, runs=runs, status=record.status)
            if record.env == "local":
                return replace(context, local=summary)
            return context.with_target(replace(context.target(record.env, summary.endpoint), last_run=summary))

        self.store.update(self.context.client_id, change)


def new_record(
    context: Context,
    env: str,
    target: str,
    endpoint: str | None,
    event: dict[str, Any],
    now: datetime,
    region: str,
    config_sha256: str | None,
    **extra: Any,
) -> RunRecord:
    """The record of a run that is starting; config_sha256 is that of the config bytes this run tests."""
    return RunRecord(
        run_id=new_run_id(now, env),
        client_id=context.client_id,
        env=env,
        target=target,
        endpoint=endpoint,
        status="running",
        started_at=now.isoformat(),
        finished_at=None,
        config_sha256=config_sha256,
        event=event,
        region=region,
        **extra,
    )


class RecordedRun:
    """A run being recorded: its record so far and its folder. Set `record` as the run goes; it is written at the end."""

    def __init__(self, recorder: RunRecorder, record: RunRecord) -> None:
        self.recorder = recorder
        self.record = record

    @property
    def folder(self) -> RunFolder:
        return self.recorder.folder


@contextmanager
def recorded_run(
    store: ContextStore,
    context: Context,
    record: RunRecord,
    clock: Callable[[], datetime],
    secrets: tuple[str, ...] = (),
) -> Iterator[RecordedRun]:
    """Hold the context's run lock and record the run at start and at the end, whatever happens in the block.

    A toolkit or disk error in the block ends the run `failed` with its exit code (it does not propagate); Ctrl-C
    and SIGTERM end it `interrupted` and propagate. After the block, `run.record` is the finished record.
    """
    with run_lock(context.path / ".run.lock", f"context {context.client_id}"):
        recorder = RunRecorder(store, context, record, secrets)
        recorder.start(record)
        run = RecordedRun(recorder, record)
        try:
            yield run
            if run.record.status == "interrupted":  # the runner caught it: say whether it was Ctrl-C or SIGTERM
                run.record = replace(run.record, exit_code=interrupted_code())
        except KeyboardInterrupt:
            code = interrupted_code()
            run.record = replace(
                run.record,
                status="interrupted",
                finished_at=clock().isoformat(),
                error=EXIT_MEANINGS[code],
                exit_code=code,
            )
            raise
        except (ToolkitError, OSError) as err:
            problem = as_toolkit_error(err)
            run.record = replace(
                run.record,
                status="failed",
                finished_at=clock().isoformat(),
                error=str(problem),
                exit_code=problem.exit_code,
            )
        finally:
            try:
                recorder.finish(run.record)
            except OSError as err:  # a full disk: record the run as failed for it, in the small files alone if they fit
                problem = as_toolkit_error(err)
                run.record = replace(
                    run.record,
                    status="failed",
                    finished_at=run.record.finished_at or clock().isoformat(),
                    error=str(problem),
                    exit_code=problem.exit_code,
                )
                with contextlib.suppress(OSError):
                    recorder.finish(run.record, reports=False)
                raise problem from err
