"""The Step Functions state machine of the workflow, generated from the step list: a pure function of settings.

One Standard, JSONPath state machine per env. Its input is `execution_input()`'s: `{"clients": [{"client_id": ...}],
"payload": {...}, "run_id": ...}`. A Choice sends up to INLINE_MAX_CLIENTS clients to an inline Map and more to a
Distributed Map (the same steps, states prefixed by the mode: state names are unique across a state machine). Per
client, each step is a `lambda:invoke` Task with the client's event (the payload's fields and its client_id), then a
Choice that stops that client on an answer that did not pass (judging.py's rules the ASL can test); a Catch per Task
records which step failed and lets the other clients go on. Retry only on errors proving the function did not run.

Each client's output is a small summary (client_id, status, failed_step, error); the steps' answers are in the
execution's history (TaskSucceeded), where the judge reads them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tasks.errors import UsageError
from tasks.pipeline.judging import ERROR_STATUSES
from tasks.settings import DEPLOYED, STEPS, Settings

TASK_TIMEOUT_MARGIN_S = 30  # as the toolkit's own Invoke waits: the function's timeout + 30 s
MAX_INLINE_CONCURRENCY = 40  # an inline Map runs at most 40 iterations at once
MAX_HISTORY_EVENTS = 25_000  # a Standard execution's history
MAX_PAYLOAD_BYTES = 256 * 1024  # an execution's input and output, a state's input and output
# Errors that prove Lambda did not run the function (the toolkit's rule: never re-send what may have run).
NOT_RUN_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
RETRY_ATTEMPTS = 6
RETRY = {"IntervalSeconds": 2, "MaxAttempts": RETRY_ATTEMPTS, "BackoffRate": 2, "JitterStrategy": "FULL"}
# History events of one client in an inline Map: iteration started/succeeded, 7 per step (Task entered, scheduled,
# started, succeeded, exited; Choice entered, exited), the summary's Pass entered/exited; each retry adds 3.
EVENTS_PER_CLIENT = 2 + 7 * len(STEPS) + 2 + 3 * RETRY_ATTEMPTS * len(STEPS)
EVENTS_PER_EXECUTION = 8  # execution started/succeeded, the Choice entered/exited, the Map entered/started/ended/exited
OUTPUT_PER_CLIENT = 1024  # bytes: client_id (<= 64), status, failed_step and an error name, with room to spare
# The most clients an inline Map takes: its concurrency, the parent's history and the execution's output bound it.
INLINE_MAX_CLIENTS = min(
    MAX_INLINE_CONCURRENCY,
    (MAX_HISTORY_EVENTS - EVENTS_PER_EXECUTION) // EVENTS_PER_CLIENT,
    MAX_PAYLOAD_BYTES // OUTPUT_PER_CLIENT,
)
MODES = ("inline", "distributed")


def state_machine_name(settings: Settings, env: str | None = None) -> str:
    return settings.state_machine_name_template.format(env=env or settings.env)


def _state(mode: str, name: str) -> str:
    return f"{mode}: {name}"


def _fails_answer(step: str) -> dict[str, Any]:
    """A Choice rule that holds when the step's answer did not pass: no numeric statusCode 200, or an error status."""
    code = "$.answer.Payload.statusCode"
    status = "$.answer.Payload.body.status"
    bad = sorted(ERROR_STATUSES | ({"no_items"} if step == "newsletter" else set()))
    return {
        "Or": [
            {
                "Not": {
                    "And": [
                        {"Variable": code, "IsPresent": True},
                        {"Variable": code, "IsNumeric": True},
                        {"Variable": code, "NumericEquals": 200},
                    ]
                }
            },
            {
                "And": [
                    {"Variable": status, "IsPresent": True},
                    {"Variable": status, "IsString": True},
                    {"Or": [{"Variable": status, "StringEquals": value} for value in bad]},
                ]
            },
        ]
    }


def _step_states(mode: str, step: str, function: str, timeout_s: float, after: str) -> dict[str, Any]:
    """The Task, its Choice, and the two summaries of a client stopped there (by its answer, by an error)."""
    task, answered = _state(mode, step), _state(mode, f"{step} answered")
    stopped, caught = _state(mode, f"{step} did not pass"), _state(mode, f"{step} failed")
    return {
        task: {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": function, "Payload.$": "$.event"},
            "TimeoutSeconds": int(timeout_s) + TASK_TIMEOUT_MARGIN_S,
            "ResultSelector": {
                "Payload.$": "$.Payload",
                "StatusCode.$": "$.StatusCode",
                "ExecutedVersion.$": "$.ExecutedVersion",
            },
            "ResultPath": "$.answer",
            "Retry": [{"ErrorEquals": list(NOT_RUN_ERRORS), **RETRY}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": caught}],
            "Next": answered,
        },
        answered: {"Type": "Choice", "Choices": [{**_fails_answer(step), "Next": stopped}], "Default": after},
        stopped: {
            "Type": "Pass",
            "Parameters": {
                "client_id.$": "$.client_id",
                "status": "failed",
                "failed_step": step,
                "error": "the answer did not pass (statusCode or body.status)",
            },
            "End": True,
        },
        caught: {
            "Type": "Pass",
            "Parameters": {
                "client_id.$": "$.client_id",
                "status": "failed",
                "failed_step": step,
                "error.$": "$.failure.Error",
            },
            "End": True,
        },
    }


def _processor(mode: str, functions: Mapping[str, str], timeouts: Mapping[str, float]) -> dict[str, Any]:
    passed = _state(mode, "passed")
    states: dict[str, Any] = {}
    for index, step in enumerate(STEPS):
        after = _state(mode, STEPS[index + 1]) if index + 1 < len(STEPS) else passed
        states |= _step_states(mode, step, functions[step], timeouts[step], after)
    states[passed] = {"Type": "Pass", "Parameters": {"client_id.$": "$.client_id", "status": "passed"}, "End": True}
    config = {"Mode": "INLINE"} if mode == "inline" else {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    return {"ProcessorConfig": config, "StartAt": _state(mode, STEPS[0]), "States": states}


def build_definition(
    functions: Mapping[str, str], timeouts: Mapping[str, float], parallel: int, deadline_s: float, comment: str
) -> dict[str, Any]:
    """The ASL document: functions and timeouts per step, parallel clients at a time, the whole run's deadline."""
    if not 1 <= parallel <= MAX_INLINE_CONCURRENCY:
        raise UsageError(f"PARALLEL={parallel}: expected 1 to {MAX_INLINE_CONCURRENCY} clients at a time")
    maps = {
        mode: {
            "Type": "Map",
            "ItemsPath": "$.clients",
            "ItemSelector": {
                "client_id.$": "$$.Map.Item.Value.client_id",
                "event.$": "States.JsonMerge($.payload, $$.Map.Item.Value, false)",
            },
            "MaxConcurrency": parallel,
            "ItemProcessor": _processor(mode, functions, timeouts),
            "End": True,
        }
        for mode in MODES
    }
    many = {"Variable": f"$.clients[{INLINE_MAX_CLIENTS}]", "IsPresent": True, "Next": "distributed: clients"}
    return {
        "Comment": comment,
        "QueryLanguage": "JSONPath",
        "StartAt": "how many clients",
        "TimeoutSeconds": int(deadline_s),
        "States": {
            "how many clients": {"Type": "Choice", "Choices": [many], "Default": "inline: clients"},
            "inline: clients": maps["inline"],
            "distributed: clients": maps["distributed"],
        },
    }


def definition(settings: Settings, parallel: int, env: str | None = None) -> dict[str, Any]:
    """The env's state machine: its three functions at their deployed timeouts, E2E_TIMEOUT for the whole run."""
    env = env or settings.env
    return build_definition(
        {step: settings.function_name(step, env) for step in STEPS},
        {step: DEPLOYED[step][0] for step in STEPS},
        parallel,
        settings.e2e_timeout,
        f"Vectora Inbox E2E on {env}: {' -> '.join(STEPS)} per client (generated by the E2E toolkit)",
    )


def render(document: Mapping[str, Any]) -> str:
    """The definition as deployed and written to state-machine.asl.json (stable: a diff shows only real changes)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def execution_input(client_ids: Sequence[str], payload: Mapping[str, Any], run_id: str) -> str:
    """An execution's input for these clients (each event: the payload's fields and the client_id); at most 256 KB."""
    if not client_ids:
        raise UsageError("no client to run: give CLIENT_ID=... or CLIENT_IDS=...")
    document = {"clients": [{"client_id": c} for c in client_ids], "payload": dict(payload), "run_id": run_id}
    text = json.dumps(document, ensure_ascii=False)
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise UsageError(
            f"the execution's input is {len(text.encode())} bytes, over Step Functions' {MAX_PAYLOAD_BYTES}: "
            "run fewer clients at once or send a smaller payload"
        )
    return text
