"""Step Functions calls: a state machine described, created or updated; an execution started, described, its history.

Every error becomes one of ours (aws_errors); a state machine that does not exist is None, not an error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tasks.aws.clients import aws_errors, error_code
from tasks.errors import UsageError

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


@dataclass(frozen=True)
class Deployed:
    """A state machine as Step Functions describes it."""

    arn: str
    definition: str
    role_arn: str


def describe(sfn: SFNClient, arn: str) -> Deployed | None:
    """The state machine at arn, or None when there is none."""
    with aws_errors("states:DescribeStateMachine", arn):
        try:
            found = sfn.describe_state_machine(stateMachineArn=arn)
        except ClientError as err:
            if error_code(err) == "StateMachineDoesNotExist":
                return None
            raise
    return Deployed(found["stateMachineArn"], found["definition"], found["roleArn"])


def create(sfn: SFNClient, name: str, definition: str, role_arn: str) -> str:
    """Create a Standard state machine; its ARN."""
    with aws_errors("states:CreateStateMachine", name):
        return sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn, type="STANDARD")[
            "stateMachineArn"
        ]


def update(sfn: SFNClient, arn: str, definition: str, role_arn: str) -> None:
    with aws_errors("states:UpdateStateMachine", arn):
        sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn)


def start_execution(sfn: SFNClient, arn: str, name: str, document: str) -> str:
    """Start an execution, always named (a run id): its ARN. A name already used is refused, never run twice."""
    with aws_errors("states:StartExecution", arn):
        try:
            return sfn.start_execution(stateMachineArn=arn, name=name, input=document)["executionArn"]
        except ClientError as err:
            if error_code(err) == "ExecutionAlreadyExists":
                raise UsageError(f"an execution named {name} already exists on {arn}: use a new run id") from err
            raise


def describe_execution(sfn: SFNClient, arn: str) -> dict[str, Any]:
    with aws_errors("states:DescribeExecution", arn):
        return dict(sfn.describe_execution(executionArn=arn))


def history(sfn: SFNClient, arn: str) -> list[dict[str, Any]]:
    """Every event of an execution's history, oldest first (all pages)."""
    with aws_errors("states:GetExecutionHistory", arn):
        pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
        return [dict(event) for page in pages for event in page["events"]]


def wait(sfn: SFNClient, arn: str, timeout_s: float, poll_s: float = 0.1) -> dict[str, Any]:
    """DescribeExecution until the execution is no longer running (or timeout_s passed): its last description."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = describe_execution(sfn, arn)
        if found["status"] != "RUNNING" or time.monotonic() > deadline:
            return found
        time.sleep(poll_s)
