"""The generated state machine deployed to the embedded AWS and run by moto's Step Functions executor, whose Lambda
tasks call back into the same server's local handlers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.aws import clients as aws
from tasks.aws import state_machines
from tasks.flows import sfn_deploy
from tasks.local.server import EmbeddedAws, seed
from tasks.settings import STEPS, Settings
from tasks.sfn import definition, history, templates
from tests.conftest import REPO, settings_for

CLIENTS = ["lai_weekly_v1", "lai_weekly_v2", "lai_weekly_v3"]


@pytest.fixture
def dev(contexts_dir: Path) -> Iterator[Settings]:
    """The embedded AWS serving dev, seeded, each client of CLIENTS' config in dev's S3; settings pointing at it."""
    with EmbeddedAws(settings_for(contexts_dir), envs=("dev",)).running() as endpoint:
        settings = settings_for(contexts_dir, VECTORA_ENV="dev", AWS_ENDPOINT_URL=endpoint)
        s3 = aws.ClientFactory.local(settings.region, endpoint).s3()
        seed(s3, settings, "dev")
        config = (REPO / "contexts" / "templates" / "lai_weekly.yaml").read_bytes()
        for client_id in CLIENTS:
            s3.put_object(Bucket=settings.config_bucket(), Key=settings.config_key(client_id), Body=config)
        yield settings


def _sfn(settings: Settings):  # type: ignore[no-untyped-def]
    endpoint = settings.endpoint("stepfunctions")
    assert endpoint is not None
    return aws.ClientFactory.local(settings.region, endpoint).sfn()


def _run(settings: Settings, arn: str, client_ids: list[str], run_id: str) -> tuple[dict, list[history.StepAnswer]]:
    sfn = _sfn(settings)
    execution = state_machines.start_execution(sfn, arn, run_id, definition.execution_input(client_ids, {}, run_id))
    assert execution.endswith(f":{run_id}")  # named by the run id, never moto's ":None"
    done = state_machines.wait(sfn, execution, timeout_s=120)
    return done, history.step_answers(state_machines.history(sfn, execution))


def _deployed(settings: Settings, parallel: int = 3) -> str:
    plan = sfn_deploy.plan(settings, _sfn(settings), parallel, templates.LOCAL_ROLE_ARN)
    assert plan.action == "create"  # CreateStateMachine accepts the generated ASL
    return sfn_deploy.apply(_sfn(settings), plan)


def test_one_client_runs_the_three_local_handlers(dev: Settings) -> None:
    done, answers = _run(dev, _deployed(dev), ["lai_weekly_v1"], "run-one")
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"]) == [{"client_id": "lai_weekly_v1", "status": "passed"}]
    assert [(a.client_id, a.step, a.outcome, a.attempts) for a in answers] == [
        ("lai_weekly_v1", step, "TaskSucceeded", 1) for step in STEPS
    ]
    assert [a.function_name for a in answers] == [dev.function_name(step) for step in STEPS]
    newsletter = answers[-1].output["Payload"]
    assert newsletter["statusCode"] == 200 and newsletter["body"]["items_selected"] > 0
    s3 = aws.ClientFactory.local(dev.region, dev.endpoint("s3") or "").s3()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=dev.newsletters_bucket())["Contents"]]
    assert any(key.startswith("lai_weekly_v1/") and key.endswith("newsletter.md") for key in keys)


def test_three_clients_in_one_execution_one_stopped_by_its_answer_while_the_others_pass(dev: Settings) -> None:
    s3 = aws.ClientFactory.local(dev.region, dev.endpoint("s3") or "").s3()
    s3.delete_object(Bucket=dev.config_bucket(), Key=dev.config_key("lai_weekly_v2"))  # its ingest: status error
    done, answers = _run(dev, _deployed(dev), CLIENTS, "run-three")
    assert done["status"] == "SUCCEEDED"
    outcomes = {c["client_id"]: c for c in json.loads(done["output"])}
    assert outcomes["lai_weekly_v1"]["status"] == outcomes["lai_weekly_v3"]["status"] == "passed"
    assert outcomes["lai_weekly_v2"]["status"] == "failed" and outcomes["lai_weekly_v2"]["failed_step"] == "ingest"
    steps = {client: [a.step for a in found] for client, found in history.by_client(answers).items()}
    assert steps == {"lai_weekly_v1": list(STEPS), "lai_weekly_v2": ["ingest"], "lai_weekly_v3": list(STEPS)}
    (ingest,) = history.by_client(answers)["lai_weekly_v2"]
    assert ingest.outcome == "TaskSucceeded" and ingest.output["Payload"]["body"]["status"] == "error"


def test_a_missing_function_is_caught_per_client_and_never_retried(dev: Settings) -> None:
    functions = {step: dev.function_name(step) for step in STEPS} | {"newsletter": "vectora-inbox-newsletter-v9-dev"}
    document = definition.build_definition(functions, {step: 900.0 for step in STEPS}, 3, 600, "missing newsletter")
    arn = state_machines.create(
        _sfn(dev), "e2e-missing-newsletter", definition.render(document), templates.LOCAL_ROLE_ARN
    )
    done, answers = _run(dev, arn, CLIENTS[:2], "run-missing")
    assert done["status"] == "SUCCEEDED"  # the Catch ended those clients, not the execution
    for outcome in json.loads(done["output"]):
        assert outcome["status"] == "failed" and outcome["failed_step"] == "newsletter"
        assert outcome["error"] == "Lambda.ResourceNotFoundException"
    for found in history.by_client(answers).values():
        assert [(a.step, a.outcome) for a in found] == [
            ("ingest", "TaskSucceeded"),
            ("normalize-score", "TaskSucceeded"),
            ("newsletter", "TaskFailed"),
        ]
        assert found[-1].attempts == 1  # not an error that proves the function did not run: never retried


def test_a_redeploy_diffs_then_updates_and_identical_is_nothing_to_do(dev: Settings) -> None:
    arn = _deployed(dev, parallel=3)
    again = sfn_deploy.plan(dev, _sfn(dev), 3, templates.LOCAL_ROLE_ARN)
    assert again.action == "unchanged" and again.diff() == ""
    changed = sfn_deploy.plan(dev, _sfn(dev), 5, templates.LOCAL_ROLE_ARN)
    assert changed.action == "update"
    assert '-      "MaxConcurrency": 3,\n+      "MaxConcurrency": 5,\n' in changed.diff()
    assert sfn_deploy.apply(_sfn(dev), changed) == arn
    assert sfn_deploy.plan(dev, _sfn(dev), 5, templates.LOCAL_ROLE_ARN).action == "unchanged"
