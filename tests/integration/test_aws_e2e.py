"""aws-e2e over real HTTP on 127.0.0.1: moto's S3 and a fault-injecting Lambda endpoint that counts executions."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.aws import clients as aws
from tasks.contexts.store import Context, ContextStore
from tasks.errors import UsageError
from tasks.flows.aws_e2e import AwsE2E
from tasks.local.server import EmbeddedAws, seed
from tasks.settings import Settings
from tests.conftest import REPO, run_tasks, safe_environ, settings_for
from tests.fault_lambda import FaultLambda

STEPS = ("ingest", "normalize-score", "newsletter")


@dataclass
class Rig:
    settings: Settings
    store: ContextStore
    context: Context
    fault: FaultLambda
    s3: object
    sleeps: list[float]
    ticks: list[tuple[str, float]]

    def flow(self, **variables: str) -> AwsE2E:
        settings = self.settings if not variables else settings_for(self.settings.contexts_dir, **self.env, **variables)
        factory = aws.ClientFactory(settings.region, endpoints=settings.endpoints, local_credentials=True)
        return AwsE2E(
            settings,
            self.store,
            factory,
            lambda: datetime.now(UTC),
            on_progress=lambda step, elapsed: self.ticks.append((step, elapsed)),
            sleep=self.sleeps.append,
        )

    @property
    def env(self) -> dict[str, str]:
        return {
            "VECTORA_ENV": "dev",
            "AWS_ENDPOINT_URL_S3": self.settings.endpoint("s3") or "",
            "AWS_ENDPOINT_URL_LAMBDA": self.fault.url,
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": self.settings.endpoint("s3") or "",
        }

    def run(self, start: str | None = None, payload: dict | None = None, **variables: str):
        flow = self.flow(**variables)
        context = self.store.load(self.context.client_id)
        return flow.run(context, flow.plan(context, start, payload))

    def executions(self, step: str) -> int:
        return self.fault.executions[self.fault.name(step)]


@pytest.fixture
def rig(contexts_dir: Path) -> Iterator[Rig]:
    local = settings_for(contexts_dir)
    with EmbeddedAws(local).running() as endpoint:
        s3 = aws.ClientFactory.local(local.region, endpoint).s3()
        seed(s3, local, "dev")
        fault = FaultLambda(s3)
        settings = settings_for(
            contexts_dir,
            VECTORA_ENV="dev",
            AWS_ENDPOINT_URL_S3=endpoint,
            AWS_ENDPOINT_URL_LAMBDA=fault.url,
            AWS_ENDPOINT_URL_CLOUDWATCH_LOGS=endpoint,
        )
        store = ContextStore(contexts_dir)
        context = store.create("lai_weekly", "aws e2e", datetime.now(UTC))
        s3.put_object(
            Bucket="vectora-inbox-config-dev",
            Key=f"clients/{context.client_id}.yaml",
            Body=context.config_path.read_bytes(),
        )
        try:
            yield Rig(settings, store, context, fault, s3, [], [])
        finally:
            fault.stop()


def run_json(rig: Rig, run_id: str) -> dict:
    return json.loads((rig.context.runs_dir / run_id / "run.json").read_text())


def test_a_healthy_pipeline_passes_with_one_execution_per_function(rig: Rig) -> None:
    record = rig.run()
    assert (record.status, record.exit_code) == ("passed", 0), record.error
    assert [rig.executions(s) for s in STEPS] == [1, 1, 1]
    document = run_json(rig, record.run_id)
    assert document["functions"]["ingest"]["CodeSha256"] == "c2hhMjU2LW9mLWNvZGU="
    assert document["config_sha256"] == rig.context.config_sha256
    assert document["endpoint"] == rig.settings.endpoint("s3")
    assert "not a pass on the real dev" in document["target"]
    assert len([o for o in document["outputs"] if o["ok"]]) == 5
    context = rig.store.load(rig.context.client_id)
    last = context.target("dev", rig.settings.endpoint("s3")).last_run
    assert last is not None and last.status == "passed" and last.config_sha256 == rig.context.config_sha256
    assert context.target("dev", None).last_run is None  # an emulated pass never counts as the real dev


@pytest.mark.parametrize(
    ("step", "behaviour", "message"),
    [
        ("ingest", "unhandled", "Runtime.ImportModuleError"),
        ("normalize-score", "status_500", "statusCode 500: ValueError: boom"),
        ("ingest", "status_error", "all sources failed"),
        ("newsletter", "no_items", "no_items"),
        ("normalize-score", "lambda_timeout", "Task timed out"),
        ("ingest", "no_outputs", "not found"),
        ("newsletter", "empty_outputs", "is empty"),
    ],
)
def test_a_failing_step_stops_the_run_with_exit_1(rig: Rig, step: str, behaviour: str, message: str) -> None:
    rig.fault.script(step, behaviour)
    record = rig.run()
    assert (record.status, record.exit_code) == ("failed", 1)
    assert message in record.error
    position = STEPS.index(step)
    assert [rig.executions(s) for s in STEPS] == [1] * (position + 1) + [0] * (2 - position)
    assert run_json(rig, record.run_id)["status"] == "failed"


@pytest.mark.parametrize(
    ("step", "behaviour", "failed_check"),
    [
        ("ingest", "nothing_ingested", "items_written"),
        ("normalize-score", "bedrock_down", "not_normalized_share"),
        ("ingest", "stale_input", "reads_this_run_ingest"),
        ("newsletter", "nothing_selected", "items_selected"),
    ],
)
def test_a_swallowed_failure_answering_success_fails_on_its_data(
    rig: Rig, step: str, behaviour: str, failed_check: str
) -> None:
    rig.fault.script(step, behaviour)
    record = rig.run()
    assert (record.status, record.exit_code) == ("failed", 1)
    assert all(s.body_status in ("success", "completed") for s in record.steps)
    assert record.error.startswith(f"data check {failed_check} failed: ")
    assert failed_check in {c.name for c in record.checks if not c.ok}
    assert sum(rig.executions(s) for s in STEPS) == len(record.steps)
    junit = (rig.context.runs_dir / record.run_id / "junit.xml").read_text()
    testcase = f'classname="vectora_e2e.dev.{record.steps[-1].step}" name="check {failed_check}"'
    assert testcase in junit and 'type="DataCheck"' in junit


def test_a_dry_run_payload_skips_output_checks_and_says_so(rig: Rig) -> None:
    record = rig.run(payload={"dry_run": True})
    assert record.status == "passed" and record.checks == () and record.outputs == ()
    assert "dry run" in (rig.context.runs_dir / record.run_id / "report.md").read_text()


def test_a_good_run_leaves_its_outputs_and_every_check(rig: Rig) -> None:
    record = rig.run()
    assert record.status == "passed" and len(record.checks) == 13 and all(c.ok for c in record.checks)
    saved = rig.context.runs_dir / record.run_id / "outputs"
    assert sorted(p.name for p in saved.rglob("*.json")) == [
        "items.json",
        "items.json",
        "manifest.json",
        "newsletter.json",
    ]


def test_throttling_that_clears_runs_the_function_once(rig: Rig) -> None:
    rig.fault.script("ingest", "throttle", "throttle", "ok")
    record = rig.run()
    assert record.status == "passed"
    assert rig.executions("ingest") == 1 and rig.fault.requests[rig.fault.name("ingest")] == 3
    assert rig.sleeps == [1, 2]


def test_throttling_that_does_not_clear_gives_up_after_bounded_retries(rig: Rig) -> None:
    rig.fault.script("normalize-score", "throttle")
    record = rig.run()
    assert (record.status, record.exit_code) == ("failed", 1)
    assert "not run after 4 attempts (TooManyRequestsException)" in record.error
    assert rig.executions("normalize-score") == 0 and rig.executions("newsletter") == 0


def test_a_5xx_before_execution_is_retried_and_runs_once(rig: Rig) -> None:
    rig.fault.script("newsletter", "service_error", "ok")
    assert rig.run().status == "passed"
    assert rig.executions("newsletter") == 1


def test_an_answer_slower_than_the_read_timeout_is_unknown_and_never_resent(rig: Rig) -> None:
    rig.fault.config_denied = True  # the configured timeout cannot be read: LAMBDA_READ_TIMEOUT applies
    rig.fault.script("normalize-score", "slow")
    record = rig.run(LAMBDA_READ_TIMEOUT="1")
    assert (record.status, record.exit_code) == ("unknown", 4)
    assert rig.executions("normalize-score") == 1 and rig.fault.requests[rig.fault.name("normalize-score")] == 1
    assert rig.executions("newsletter") == 0
    assert "aws logs tail /aws/lambda/vectora-inbox-normalize-score-v2-dev --since" in record.error


def test_a_connection_reset_after_sending_is_unknown(rig: Rig) -> None:
    rig.fault.script("ingest", "reset")
    record = rig.run()
    assert (record.status, record.exit_code) == ("unknown", 4)
    assert rig.executions("ingest") == 1


def test_a_missing_function_is_exit_3_and_named(rig: Rig) -> None:
    record = rig.run(FUNCTION_NAME_TEMPLATE="vectora-inbox-{step}-v3-{env}")
    assert (record.status, record.exit_code) == ("failed", 3)
    assert "vectora-inbox-ingest-v3-dev" in record.error and "not found" in record.error
    assert sum(rig.fault.executions.values()) == 0


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [("denied", "access denied: lambda:InvokeFunction"), ("expired", "AWS rejected the credentials")],
)
def test_access_denied_or_expired_credentials_on_invoke_is_exit_3(rig: Rig, behaviour: str, message: str) -> None:
    rig.fault.script("ingest", behaviour)
    record = rig.run()
    assert (record.status, record.exit_code) == ("failed", 3) and message in record.error
    assert run_json(rig, record.run_id)["exit_code"] == 3
    assert sum(rig.fault.executions.values()) == 0


def test_an_output_left_by_an_earlier_run_does_not_pass(rig: Rig) -> None:
    assert rig.run().status == "passed"
    time.sleep(1.1)  # S3 keeps whole seconds
    rig.fault.script("ingest", "no_outputs")
    record = rig.run()
    assert record.status == "failed" and "before this step started" in record.error


def test_payload_is_merged_into_every_event_and_recorded(rig: Rig) -> None:
    record = rig.run(payload={"period_days": 7})
    assert [e["period_days"] for e in rig.fault.events] == [7, 7, 7]
    assert run_json(rig, record.run_id)["event"] == {"client_id": rig.context.client_id, "period_days": 7}


def test_from_a_step_reverifies_earlier_outputs_and_is_labelled_resumed(rig: Rig) -> None:
    first = rig.run()
    record = rig.run(start="newsletter")
    assert record.status == "passed" and record.resumed_from == first.run_id
    assert [rig.executions(s) for s in STEPS] == [1, 1, 2]
    assert {o.step for o in record.outputs} == set(STEPS)


def test_a_resumed_run_says_so_on_the_terminal(rig: Rig) -> None:
    first = rig.run()
    environ = safe_environ(CONTEXTS_DIR=str(rig.settings.contexts_dir), **rig.env)
    result = run_tasks(environ, "aws-e2e", "--client-id", rig.context.client_id, "--from", "newsletter")
    assert result.returncode == 0, result.stderr
    resumed = f"resumed from run {first.run_id}: ingest, normalize-score not invoked again, outputs re-verified"
    assert resumed in result.stdout


def test_from_a_step_fails_when_an_earlier_output_is_gone(rig: Rig) -> None:
    first = rig.run()
    curated = next(o.uri for o in first.outputs if o.step == "normalize-score")
    bucket, _, key = curated.removeprefix("s3://").partition("/")
    rig.s3.delete_object(Bucket=bucket, Key=key)
    record = rig.run(start="newsletter")
    assert record.status == "failed" and "no longer valid" in record.error
    assert rig.executions("newsletter") == 1


def test_unknown_from_step_and_bad_payload_are_usage_errors(rig: Rig) -> None:
    flow = rig.flow()
    with pytest.raises(UsageError, match="unknown step 'publish'"):
        flow.plan(rig.context, "publish")
    from tasks.cli.run_commands import parse_payload

    with pytest.raises(UsageError, match="not JSON"):
        parse_payload("{period_days: 7}", "x_v1")
    with pytest.raises(UsageError, match="may not change the client_id"):
        parse_payload('{"client_id": "other_v1"}', "x_v1")


def test_a_context_not_promoted_is_refused_before_any_run(rig: Rig) -> None:
    rig.s3.delete_object(Bucket="vectora-inbox-config-dev", Key=f"clients/{rig.context.client_id}.yaml")
    with pytest.raises(UsageError, match="promote the context first"):
        rig.run()
    assert rig.store.load(rig.context.client_id).runs == () and sum(rig.fault.requests.values()) == 0


def test_a_long_step_reports_progress_while_it_runs(rig: Rig) -> None:
    """The step answers only once two progress lines were reported: nothing here depends on timing under load."""
    rig.fault.gate = threading.Event()
    rig.fault.script("normalize-score", "slow")

    def open_gate_after_two_ticks() -> None:
        deadline = time.monotonic() + 60
        while len(rig.ticks) < 2 and time.monotonic() < deadline:  # only normalize-score is running meanwhile
            time.sleep(0.01)
        assert rig.fault.gate is not None
        rig.fault.gate.set()

    threading.Thread(target=open_gate_after_two_ticks, daemon=True).start()
    assert rig.run(PROGRESS_INTERVAL="0.05").status == "passed"
    ticks = [elapsed for step, elapsed in rig.ticks if step == "normalize-score"]
    assert len(ticks) >= 2 and ticks == sorted(ticks) and rig.ticks[0][0] == "normalize-score"


def test_a_published_run_is_read_back_by_summary_and_compare(rig: Rig) -> None:
    from tasks.aws import published_runs
    from tasks.contexts.runs import RunFolder
    from tasks.reports import history

    record = rig.run()
    prefix = published_runs.publish(rig.s3, rig.settings, record, RunFolder(rig.context.runs_dir / record.run_id))
    assert prefix == f"s3://vectora-inbox-data-dev/e2e-runs/{rig.context.client_id}/{record.run_id}/"
    published = published_runs.published_runs(rig.s3, rig.settings).records
    assert [r.run_id for r in published] == [record.run_id]
    other = replace(published[0], client_id="lai_weekly_v99", run_id="elsewhere")
    rows = history.summary(rig.store, [*published, other])
    assert [r.client_id for r in rows] == [rig.context.client_id, "lai_weekly_v99"]
    assert rows[1].last.run_id == "elsewhere"
    compared = history.runs_to_compare(rig.store, [rig.context.client_id, "lai_weekly_v99"], [other])
    assert [r.run_id for r in compared] == [record.run_id, "elsewhere"]


def test_many_clients_run_concurrently_each_in_order_with_one_exit_code(rig: Rig) -> None:
    contexts = [rig.store.create("lai_weekly", f"client {n}", datetime.now(UTC)) for n in range(3)]
    for context in contexts[:2]:  # the third is not promoted: it fails alone, the others pass
        rig.s3.put_object(
            Bucket="vectora-inbox-config-dev",
            Key=f"clients/{context.client_id}.yaml",
            Body=context.config_path.read_bytes(),
        )
    rig.fault.slow_seconds = 0.3
    for step in STEPS:
        rig.fault.script(step, "slow")
    ids = [rig.context.client_id, *(c.client_id for c in contexts)]
    result = run_tasks(
        safe_environ(CONTEXTS_DIR=str(rig.settings.contexts_dir), **rig.env),
        "aws-e2e",
        "--client-ids",
        *ids,
        "--parallel",
        "4",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"[{contexts[2].client_id}] error: " in result.stderr and "promote the context first" in result.stderr
    assert [rig.executions(s) for s in STEPS] == [3, 3, 3]
    assert rig.fault.max_in_flight >= 2  # clients overlapped
    assert result.stdout.count("exit 0: passed") == 3 and "exit 2: usage or bad input" in result.stdout
    for client_id in ids[:3]:
        order = [e["function"] for e in rig.fault.events if e["client_id"] == client_id]
        assert order == [rig.fault.name(s) for s in STEPS]  # each client's steps strictly in order


def test_ctrl_c_is_not_held_up_by_configuration_reads_still_waiting(tmp_path: Path) -> None:
    """The three GetFunctionConfiguration calls run at once in threads; Ctrl-C must end the command at once, not when
    the Lambda client's read timeout (60 s here) gives up on a read that gets no answer."""
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        code = (
            "import sys\n"
            "from tasks.aws import clients as aws\n"
            f"client = aws.ClientFactory.local('eu-west-3', 'http://127.0.0.1:{silent.getsockname()[1]}').lambda_()\n"
            "print('reading', flush=True)\n"
            "aws.function_configurations(client, {'ingest': 'a', 'normalize-score': 'b', 'newsletter': 'c'})\n"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, env=safe_environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert child.stdout is not None and child.stdout.readline() == b"reading\n"
        time.sleep(0.3)  # the three reads are waiting by now (nothing depends on it: a later Ctrl-C must work too)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=20)
    assert child.returncode != 0 and b"KeyboardInterrupt" in stderr
