"""The boto3 facade: clients from profile/region/endpoint, Invoke as an Invocation, the S3 calls we need.

boto and botocore errors become our errors here (with their cause kept), so callers see one hierarchy.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from tasks.errors import EnvironmentProblem, OutcomeUnknown, ToolkitError
from tasks.lambda_log import decode_log_tail

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client

INVOKE_MARGIN_S = 30
NOT_FOUND = {"ResourceNotFoundException", "NoSuchBucket", "NoSuchKey", "404", "NotFound"}
DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
}


@dataclass(frozen=True)
class Invocation:
    """One Invoke call's answer, as received."""

    function_name: str
    status_code: int
    function_error: str | None
    payload: Any
    log_tail: str
    request_id: str | None
    executed_version: str | None


def _isolated_session(region: str) -> boto3.session.Session:
    """A session that reads nothing of the user's AWS set-up (profile, config files, keys): for the embedded AWS."""
    # (config-file name, environment variable, default, converter): no variable and no file to read.
    core = botocore.session.Session(
        session_vars={
            "profile": (None, None, None, None),
            "config_file": (None, None, os.devnull, None),
            "credentials_file": (None, None, os.devnull, None),
        }
    )
    return boto3.session.Session(
        aws_access_key_id="local",
        aws_secret_access_key="local",
        aws_session_token=None,
        region_name=region,
        botocore_session=core,
    )


class ClientFactory:
    """Builds boto3 clients for one account/region/endpoint. A given endpoint is used as is, for every service."""

    def __init__(
        self, region: str, profile: str | None = None, endpoint: str | None = None, local_credentials: bool = False
    ) -> None:
        self.region = region
        self.profile = profile
        self.endpoint = endpoint
        try:
            if local_credentials:
                self.session = _isolated_session(region)
            else:
                self.session = boto3.session.Session(profile_name=profile, region_name=region)
        except ProfileNotFound as err:
            raise EnvironmentProblem(
                f"AWS profile {profile!r} not found: run `aws configure sso --profile {profile}` "
                "or set AWS_PROFILE to one in ~/.aws/config"
            ) from err

    def s3(self) -> S3Client:
        return self.session.client(
            "s3", endpoint_url=self.endpoint, config=Config(retries={"mode": "standard", "max_attempts": 3})
        )

    def lambda_(self, read_timeout: float = 60) -> LambdaClient:
        """A Lambda client that waits read_timeout for an answer and never retries an invoke by itself."""
        config = Config(
            read_timeout=read_timeout, connect_timeout=10, tcp_keepalive=True, retries={"total_max_attempts": 1}
        )
        return self.session.client("lambda", endpoint_url=self.endpoint, config=config)


def describe_error(err: Exception, action: str, resource: str) -> ToolkitError:
    """Map a boto error raised by action on resource to one of our errors, with a line that says what to do."""
    if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
        return EnvironmentProblem(f"no AWS credentials for {action}: run `aws sso login` or set AWS_PROFILE")
    if isinstance(err, EndpointConnectionError):
        return EnvironmentProblem(
            f"cannot reach the endpoint for {action} on {resource}: check the network or endpoint"
        )
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        message = err.response.get("Error", {}).get("Message", "")
        if code in NOT_FOUND:
            return EnvironmentProblem(f"{resource} not found ({action}): check the env and that it is deployed")
        if code in DENIED:
            return EnvironmentProblem(f"access denied: {action} on {resource} ({code}); check your role's permissions")
        return EnvironmentProblem(f"{action} on {resource} failed: {code} {message}".strip())
    return EnvironmentProblem(f"{action} on {resource} failed: {err}")


@contextmanager
def aws_errors(action: str, resource: str) -> Iterator[None]:
    """Translate boto errors raised in the block into our errors."""
    try:
        yield
    except (BotoCoreError, ClientError) as err:
        raise describe_error(err, action, resource) from err


def function_configuration(client: LambdaClient, name: str) -> dict[str, Any]:
    """GetFunctionConfiguration for name."""
    with aws_errors("lambda:GetFunctionConfiguration", f"function {name}"):
        return dict(client.get_function_configuration(FunctionName=name))


def invoke(client: LambdaClient, name: str, event: dict[str, Any]) -> Invocation:
    """Invoke name once, synchronously, with the log tail. A request sent but unanswered is OutcomeUnknown."""
    sent = time.time()
    try:
        answer = client.invoke(
            FunctionName=name,
            InvocationType="RequestResponse",
            LogType="Tail",
            Payload=json.dumps(event).encode("utf-8"),
        )
    except (ReadTimeoutError, ConnectionClosedError) as err:
        window = f"{datetime.fromtimestamp(sent).astimezone().isoformat(timespec='seconds')} to now"
        raise OutcomeUnknown(
            f"no answer from {name} ({type(err).__name__}); it may have run ({window}): "
            f"aws logs tail /aws/lambda/{name} --since 1h"
        ) from err
    except (BotoCoreError, ClientError) as err:
        raise describe_error(err, "lambda:InvokeFunction", f"function {name}") from err
    raw = answer["Payload"].read()
    try:
        payload: Any = json.loads(raw) if raw else None
    except ValueError:
        payload = raw.decode("utf-8", "replace")
    return Invocation(
        function_name=name,
        status_code=answer["StatusCode"],
        function_error=answer.get("FunctionError"),
        payload=payload,
        log_tail=decode_log_tail(answer.get("LogResult")),
        request_id=answer.get("ResponseMetadata", {}).get("RequestId"),
        executed_version=answer.get("ExecutedVersion"),
    )
