"""The Step Functions state machine as data: generated from the step list and settings, pure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.errors import ConfigError, UsageError
from tasks.settings import STEPS, Settings, load_settings
from tasks.sfn import definition, templates
from tasks.sfn.definition import INLINE_MAX_CLIENTS, MODES, NOT_RUN_ERRORS


def _settings(tmp_path: Path, **variables: str) -> Settings:
    return load_settings(tmp_path, {"VECTORA_ENV": "dev", **variables}, environ={})


def _processor(document: dict[str, Any], mode: str) -> dict[str, Any]:
    return document["States"][f"{mode}: clients"]["ItemProcessor"]


def test_the_name_comes_from_its_template(tmp_path: Path) -> None:
    assert definition.state_machine_name(_settings(tmp_path)) == "vectora-inbox-e2e-v2-dev"
    custom = _settings(tmp_path, STATE_MACHINE_NAME_TEMPLATE="team-e2e-{env}")
    assert definition.state_machine_name(custom, "stage") == "team-e2e-stage"


def test_standard_jsonpath_with_the_run_deadline_and_both_maps(tmp_path: Path) -> None:
    document = definition.definition(_settings(tmp_path, E2E_TIMEOUT="1200"), parallel=5)
    assert document["QueryLanguage"] == "JSONPath" and document["TimeoutSeconds"] == 1200
    top = document["States"][document["StartAt"]]
    assert top["Type"] == "Choice" and top["Default"] == "inline: clients"
    # More than INLINE_MAX_CLIENTS (40: the inline Map's concurrency binds before history and output) -> Distributed.
    assert INLINE_MAX_CLIENTS == 40
    assert top["Choices"] == [{"Variable": "$.clients[40]", "IsPresent": True, "Next": "distributed: clients"}]
    for mode, config in (
        ("inline", {"Mode": "INLINE"}),
        ("distributed", {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}),
    ):
        mapped = document["States"][f"{mode}: clients"]
        assert mapped["Type"] == "Map" and mapped["ItemsPath"] == "$.clients" and mapped["MaxConcurrency"] == 5
        assert mapped["ItemSelector"]["event.$"] == "States.JsonMerge($.payload, $$.Map.Item.Value, false)"
        assert mapped["ItemProcessor"]["ProcessorConfig"] == config
        assert mapped["ItemProcessor"]["StartAt"] == f"{mode}: ingest"


def test_each_step_is_a_lambda_invoke_task_of_its_function_with_the_clients_event(tmp_path: Path) -> None:
    settings = _settings(tmp_path, FUNCTION_NAME_TEMPLATE="team-{step}-{env}")
    document = definition.definition(settings, parallel=4)
    for mode in MODES:
        states = _processor(document, mode)["States"]
        for step in STEPS:
            task = states[f"{mode}: {step}"]
            assert task["Type"] == "Task" and task["Resource"] == "arn:aws:states:::lambda:invoke"
            assert task["Parameters"] == {"FunctionName": f"team-{step}-dev", "Payload.$": "$.event"}
            assert task["TimeoutSeconds"] == 900 + 30  # the deployed timeout + the margin
            assert task["ResultSelector"] == {
                "Payload.$": "$.Payload",
                "StatusCode.$": "$.StatusCode",
                "ExecutedVersion.$": "$.ExecutedVersion",
            }
            assert task["Next"] == f"{mode}: {step} answered"


def test_retry_only_on_errors_that_prove_the_function_did_not_run(tmp_path: Path) -> None:
    document = definition.definition(_settings(tmp_path), parallel=4)
    for mode in MODES:
        for step in STEPS:
            (retry,) = _processor(document, mode)["States"][f"{mode}: {step}"]["Retry"]
            assert retry == {
                "ErrorEquals": list(NOT_RUN_ERRORS),
                "IntervalSeconds": 2,
                "MaxAttempts": 6,
                "BackoffRate": 2,
                "JitterStrategy": "FULL",
            }
            assert set(retry["ErrorEquals"]) == {
                "Lambda.ServiceException",
                "Lambda.AWSLambdaException",
                "Lambda.SdkClientException",
                "Lambda.TooManyRequestsException",
            }  # never Lambda.Unknown, States.Timeout, States.TaskFailed or States.ALL: those may have run


def test_a_catch_per_step_records_the_failed_step_and_ends_only_that_client(tmp_path: Path) -> None:
    document = definition.definition(_settings(tmp_path), parallel=4)
    states = _processor(document, "inline")["States"]
    for step in STEPS:
        (catch,) = states[f"inline: {step}"]["Catch"]
        assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": f"inline: {step} failed"}
        caught = states[catch["Next"]]
        assert caught["Type"] == "Pass" and caught["End"] is True
        assert caught["Parameters"]["failed_step"] == step and caught["Parameters"]["error.$"] == "$.failure.Error"


def test_a_choice_after_each_step_stops_the_client_on_an_answer_that_did_not_pass(tmp_path: Path) -> None:
    states = _processor(definition.definition(_settings(tmp_path), parallel=4), "inline")["States"]
    following = [*[f"inline: {s}" for s in STEPS[1:]], "inline: passed"]
    for step, after in zip(STEPS, following, strict=True):
        choice = states[f"inline: {step} answered"]
        assert choice["Type"] == "Choice" and choice["Default"] == after
        (rule,) = choice["Choices"]
        assert rule["Next"] == f"inline: {step} did not pass"
        assert states[rule["Next"]]["Parameters"]["failed_step"] == step
        not_200, error_status = rule["Or"]
        assert {"Variable": "$.answer.Payload.statusCode", "NumericEquals": 200} in not_200["Not"]["And"]
        statuses = {r["StringEquals"] for r in error_status["And"][2]["Or"]}
        assert statuses == (
            {"error", "failed", "failure", "no_items"} if step == "newsletter" else {"error", "failed", "failure"}
        )
    assert states["inline: passed"]["Parameters"] == {"client_id.$": "$.client_id", "status": "passed"}


def test_every_transition_names_a_state_and_state_names_are_unique(tmp_path: Path) -> None:
    document = definition.definition(_settings(tmp_path), parallel=4)
    names: list[str] = list(document["States"])
    for mode in MODES:
        processor = _processor(document, mode)
        names += list(processor["States"])
        targets = [processor["StartAt"]]
        for state in processor["States"].values():
            targets += [state.get("Next"), state.get("Default")] + [c["Next"] for c in state.get("Catch", [])]
            targets += [c["Next"] for c in state.get("Choices", [])]
        assert {t for t in targets if t} <= processor["States"].keys()
        assert all(len(name) <= 80 for name in processor["States"])
    assert len(names) == len(set(names))


@pytest.mark.parametrize("parallel", [0, 41, -1])
def test_parallel_is_one_to_forty(tmp_path: Path, parallel: int) -> None:
    with pytest.raises(UsageError, match=rf"PARALLEL={parallel}: expected 1 to 40"):
        definition.definition(_settings(tmp_path), parallel=parallel)


def test_the_rendered_definition_is_stable(tmp_path: Path) -> None:
    first = definition.render(definition.definition(_settings(tmp_path), parallel=4))
    assert first == definition.render(definition.definition(_settings(tmp_path), parallel=4))
    assert json.loads(first)["States"]["inline: clients"]["MaxConcurrency"] == 4


def test_execution_input_names_each_client_and_carries_payload_and_run_id() -> None:
    document = json.loads(definition.execution_input(["a_v1", "b_v2"], {"period_days": 7}, "run-1"))
    assert document == {
        "clients": [{"client_id": "a_v1"}, {"client_id": "b_v2"}],
        "payload": {"period_days": 7},
        "run_id": "run-1",
    }
    with pytest.raises(UsageError, match="no client to run"):
        definition.execution_input([], {}, "run-1")
    with pytest.raises(UsageError, match="over Step Functions' 262144"):
        definition.execution_input(["a_v1"], {"big": "x" * 262_144}, "run-1")


def test_the_role_is_a_setting_checked_with_a_local_stand_in_on_a_custom_endpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SFN_ROLE_ARN is not set: set it .* on dev"):
        templates.role_arn(_settings(tmp_path))
    with pytest.raises(ConfigError, match="SFN_ROLE_ARN='arn:aws:iam::1:role/x': expected an IAM role ARN"):
        templates.role_arn(_settings(tmp_path, SFN_ROLE_ARN="arn:aws:iam::1:role/x"))
    emulated = _settings(tmp_path, AWS_ENDPOINT_URL="http://127.0.0.1:4566")
    assert templates.role_arn(emulated) == templates.LOCAL_ROLE_ARN
    role = "arn:aws:iam::111122223333:role/e2e-sfn"
    assert templates.role_arn(_settings(tmp_path, SFN_ROLE_ARN=role)) == role
    assert templates.state_machine_arn("eu-west-3", role, "m") == "arn:aws:states:eu-west-3:111122223333:stateMachine:m"


def test_least_privilege_policies(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    role = "arn:aws:iam::111122223333:role/e2e-sfn"
    (invoke,) = templates.execution_role_policy(settings, role)["Statement"]
    assert invoke["Action"] == ["lambda:InvokeFunction"]
    assert invoke["Resource"] == [
        f"arn:aws:lambda:eu-west-3:111122223333:function:vectora-inbox-{step}-v2-dev" for step in STEPS
    ]
    machine, executions, pass_role = templates.caller_policy(settings, role, "vectora-inbox-e2e-v2-dev")["Statement"]
    assert machine["Action"] == [
        "states:CreateStateMachine",
        "states:UpdateStateMachine",
        "states:DescribeStateMachine",
        "states:StartExecution",
    ]
    assert machine["Resource"] == ["arn:aws:states:eu-west-3:111122223333:stateMachine:vectora-inbox-e2e-v2-dev"]
    assert executions["Action"] == ["states:DescribeExecution", "states:GetExecutionHistory", "states:StopExecution"]
    assert executions["Resource"] == ["arn:aws:states:eu-west-3:111122223333:execution:vectora-inbox-e2e-v2-dev:*"]
    assert pass_role["Action"] == ["iam:PassRole"] and pass_role["Resource"] == [role]


def test_the_sam_template_holds_the_same_definition(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    document = definition.definition(settings, parallel=4)
    template = yaml.safe_load(templates.sam_template(settings, "vectora-inbox-e2e-v2-dev", document))
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    machine = template["Resources"]["E2EStateMachine"]
    assert machine["Type"] == "AWS::Serverless::StateMachine"
    assert machine["Properties"]["Name"] == "vectora-inbox-e2e-v2-dev" and machine["Properties"]["Type"] == "STANDARD"
    assert machine["Properties"]["Role"] == {"Ref": "ExecutionRoleArn"}
    assert machine["Properties"]["Definition"] == document
