"""The local E2E flow: a context, the embedded AWS, the steps through boto3, outputs verified, the run recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from tasks.aws import clients as aws
from tasks.aws import outputs
from tasks.contexts import client_config
from tasks.contexts.files import write_json
from tasks.contexts.runs import RecordedRun, new_record, recorded_run
from tasks.contexts.store import Context, ContextStore, default_purpose, utc_now
from tasks.errors import EXIT_FAILED
from tasks.flows.recordings_list import RECORDINGS_USED
from tasks.local.server import EmbeddedAws, seed
from tasks.local.services import Services, describe_miss
from tasks.pipeline.checks import CheckResult, Expectations, load_expectations
from tasks.pipeline.records import RunRecord, StepResult
from tasks.pipeline.runner import Runner
from tasks.settings import STEPS, Settings

TARGET = "embedded AWS (moto S3 + local Lambda runtime)"


class LocalE2E:
    """Runs the whole workflow on this machine for one context. Reports progress through on_step_end."""

    def __init__(
        self,
        settings: Settings,
        store: ContextStore,
        clock: Callable[[], datetime] = utc_now,
        on_step_end: Callable[[int, int, StepResult, list[CheckResult]], None] = lambda i, n, r, c: None,
    ) -> None:
        self.settings = replace(settings, env="local")
        self.store = store
        self.clock = clock
        self.on_step_end = on_step_end

    def context(self, client_id: str | None, template: str, purpose: str | None) -> Context:
        """The context to run: the one named, else a new one from template."""
        if client_id:
            return self.store.load(client_id)
        now = self.clock()
        return self.store.create(template, purpose or default_purpose(now), now)

    def run(self, context: Context, payload: dict[str, Any] | None = None) -> RunRecord:
        """Run the workflow for context under its run lock; the run is recorded whatever happens.

        payload: extra event fields (period_days, dry_run, the sample pipeline's `simulate`...).
        """
        config = context.read_config()  # a broken config or expectations file is refused before anything is recorded
        expectations = load_expectations(context.expectations_path)
        event = {"client_id": context.client_id, **(payload or {})}
        record = new_record(
            context, "local", TARGET, None, event, self.clock(), self.settings.region, client_config.sha256(config)
        )
        with recorded_run(self.store, context, record, self.clock, self.settings.secrets) as run:
            self._run(run, config, expectations)
        return run.record

    def _run(self, run: RecordedRun, config: bytes, expectations: Expectations) -> None:
        """Start the embedded AWS, seed it, invoke the steps; run.record holds what is known at each stage."""
        settings = self.settings
        server = EmbeddedAws(settings, preload=True)  # the functions' interpreters import boto3 while S3 is seeded
        with server.running() as endpoint:
            run.record = record = replace(run.record, endpoint=endpoint)
            factory = aws.ClientFactory.local(settings.region, endpoint)
            s3 = factory.s3()
            seed(s3, settings, "local")
            with aws.aws_errors("s3:PutObject", "the embedded S3"):
                s3.put_object(Bucket=settings.config_bucket(), Key=settings.config_key(record.client_id), Body=config)
            server.runtime.prewarm(server.runtime.functions())  # three cold starts overlap what comes before step 1
            functions = {step: settings.function_name(step) for step in STEPS}
            timeout = max(settings.function_timeout(step) for step in STEPS)
            lambda_client = factory.lambda_(read_timeout=timeout + aws.INVOKE_MARGIN_S)
            configurations = aws.function_configurations(lambda_client, functions)
            run.record = record = replace(
                record, functions={step: aws.tested_version(found) for step, found in configurations.items()}
            )
            reader = outputs.OutputReader(s3)
            runner = Runner(
                invoke=lambda step, name, event: aws.invoke(lambda_client, name, event),
                verify=outputs.verifier(reader, settings, "local", record.client_id, self.clock),
                read=reader,
                clock=self.clock,
                expectations=expectations,
                on_step_end=lambda index, result, found: self.on_step_end(index, len(STEPS), result, found),
            )
            record = runner.run(record, functions)
            run.record = record = self._with_services(record, server.services)
            reader.save(record.outputs, run.folder.outputs)
            used = {"hits": server.services.hits(), "misses": [m.pending.name for m in server.services.misses()]}
            write_json(run.folder.path / RECORDINGS_USED, used)

    def _with_services(self, record: RunRecord, services: Services) -> RunRecord:
        """The record with what was stubbed or replayed; failed when a stand-in could not answer (a broken recording,
        a prompt no stub rule matches) or replay missed (unless LOCAL_REPLAY=lenient): a handler's own fallback must
        not turn a missing answer into a pass."""
        notes = (*record.notes, *services.notes())
        stand_ins = services.stand_ins()
        misses = [describe_miss(m, self.settings.local_recordings) for m in services.misses()]
        lenient = self.settings.local_replay_lenient
        problems = [*services.problems(), *([] if lenient else misses)]
        if misses and lenient:
            stand_ins = (*stand_ins, f"{len(misses)} call{'s' if len(misses) != 1 else ''} missed")
            notes = (*notes, *(f"replay miss (LOCAL_REPLAY=lenient): {m}" for m in misses))
        record = replace(record, notes=notes, stand_ins=stand_ins)
        if not problems:
            return record
        error = problems[0] + (f" (and {len(problems) - 1} more, in the notes)" if len(problems) > 1 else "")
        if misses and not lenient:
            error += "; LOCAL_REPLAY=lenient lets the handler's own error handling carry on"
        more = (*(f"also: {p}" for p in problems[1:]), *((f"then: {record.error}",) if record.error else ()))
        return replace(record, status="failed", exit_code=EXIT_FAILED, error=error, notes=(*notes, *more))
