"""The local E2E flow: a context, the embedded AWS, the steps through boto3, outputs verified, the run recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from tasks import aws, verify
from tasks.contexts import Context, ContextStore
from tasks.errors import EXIT_INTERRUPTED, ToolkitError
from tasks.files import run_lock
from tasks.local_aws import EmbeddedAws, create_buckets, upload_canonical
from tasks.runs import RunRecorder, new_run_id
from tasks.settings import STEPS, Settings
from tasks.workflow import Runner, RunRecord, StepResult

TARGET = "embedded AWS (moto S3 + local Lambda runtime)"


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_purpose(now: datetime) -> str:
    return f"local E2E run of {now:%Y-%m-%d %H:%M} UTC"


class LocalE2E:
    """Runs the whole workflow on this machine for one context. Reports progress through the given callbacks."""

    def __init__(
        self,
        settings: Settings,
        store: ContextStore,
        clock: Callable[[], datetime] = utc_now,
        on_step_end: Callable[[int, int, StepResult], None] = lambda i, n, r: None,
    ) -> None:
        self.settings = replace(settings, env="local", profile=None)
        self.store = store
        self.clock = clock
        self.on_step_end = on_step_end

    def context(self, client_id: str | None, template: str, purpose: str | None) -> Context:
        """The context to run: the one named, else a new one from template."""
        if client_id:
            return self.store.load(client_id)
        now = self.clock()
        return self.store.create(template, purpose or default_purpose(now), now)

    def run(self, context: Context) -> RunRecord:
        """Run the workflow for context under its run lock; the run is recorded whatever happens."""
        with run_lock(context.path / ".run.lock", f"context {context.client_id}"):
            config = context.config_path.read_bytes()
            started = self.clock()
            record = RunRecord(
                run_id=new_run_id(started, "local"),
                client_id=context.client_id,
                env="local",
                target=TARGET,
                endpoint=None,
                status="running",
                started_at=started.isoformat(),
                finished_at=None,
                config_sha256=context.config_sha256,
                event={"client_id": context.client_id},
            )
            recorder = RunRecorder(self.store, context, record)
            recorder.start(record)
            try:
                record = self._run(record, config, recorder)
            except KeyboardInterrupt:
                record = replace(
                    record,
                    status="interrupted",
                    finished_at=self.clock().isoformat(),
                    error="interrupted",
                    exit_code=EXIT_INTERRUPTED,
                )
                raise
            except ToolkitError as err:
                record = replace(
                    record,
                    status="failed",
                    finished_at=self.clock().isoformat(),
                    error=str(err),
                    exit_code=err.exit_code,
                )
            finally:
                recorder.finish(record)
            return record

    def _run(self, record: RunRecord, config: bytes, recorder: RunRecorder) -> RunRecord:
        settings = self.settings
        with EmbeddedAws(settings).running() as endpoint:
            record = replace(record, endpoint=endpoint)
            factory = aws.ClientFactory(settings.region, endpoint=endpoint, local_credentials=True)
            s3 = factory.s3()
            with aws.aws_errors("seed the embedded S3", endpoint):
                create_buckets(
                    s3,
                    [settings.config_bucket(), settings.data_bucket(), settings.newsletters_bucket()],
                    settings.region,
                )
                upload_canonical(s3, settings.local_canonical_dir, settings.config_bucket())
                s3.put_object(Bucket=settings.config_bucket(), Key=settings.config_key(record.client_id), Body=config)
            functions = {step: settings.function_name(step) for step in STEPS}
            lambda_client = factory.lambda_(read_timeout=settings.local_lambda_timeout + aws.INVOKE_MARGIN_S)
            record = replace(
                record,
                functions={
                    step: _tested_version(aws.function_configuration(lambda_client, name))
                    for step, name in functions.items()
                },
            )

            def check(result: StepResult, step_started: datetime) -> list[verify.OutputCheck]:
                wanted = verify.expected_outputs(
                    settings, "local", record.client_id, result, step_started, self.clock()
                )
                return [verify.check_output(s3, result.step, uris, step_started) for uris in wanted]

            runner = Runner(
                invoke=lambda step, name, event: aws.invoke(lambda_client, name, event),
                verify=check,
                clock=self.clock,
                on_step_end=lambda index, result: self.on_step_end(index, len(STEPS), result),
            )
            record = runner.run(record, functions)
            with aws.aws_errors("download the outputs", endpoint):
                verify.download(s3, list(record.outputs), recorder.folder.outputs)
        return record


def _tested_version(configuration: dict) -> dict:
    """What was tested: the code's digest, version and modification time."""
    return {key: configuration.get(key) for key in ("CodeSha256", "Version", "LastModified", "Timeout", "MemorySize")}
