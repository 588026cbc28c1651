"""The boto3 facade: clients from profile/region/endpoints, Invoke as an Invocation, error mapping.

boto and botocore errors become our errors here (with their cause kept), so callers see one hierarchy.
"""

from __future__ import annotations

import functools
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
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
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)

from tasks.concurrency import all_at_once
from tasks.errors import EnvironmentProblem, OutcomeUnknown, StepFailed, TooLarge, ToolkitError
from tasks.json_documents import TooDeep, parse_json
from tasks.pipeline.records import Invocation
from tasks.pipeline.report_line import decode_log_tail

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

INVOKE_MARGIN_S = 30
INVOKE_ATTEMPTS = 4
NOT_FOUND = {"ResourceNotFoundException", "NoSuchBucket", "NoSuchKey", "404", "NotFound", "NoSuchVersion"}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError", "403"}
BAD_CREDENTIALS = {
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
}
THROTTLED = {"TooManyRequestsException", "ThrottlingException", "Throttling", "SlowDown"}


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
        aws_access_key_id="local", aws_secret_access_key="local", region_name=region, botocore_session=core
    )


def _user_session(
    region: str, profile: str | None, credentials: Mapping[str, str], origin: str
) -> boto3.session.Session:
    """A session for the user's account: the profile, else the keys given, else boto3's own chain."""
    keys = {} if profile else credentials
    where = f" ({origin})" if origin else ""
    try:
        session = boto3.session.Session(
            aws_access_key_id=keys.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=keys.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=keys.get("AWS_SESSION_TOKEN"),
            region_name=region,
            profile_name=profile,
        )
        found = session.get_credentials()
    except ProfileNotFound as err:
        raise EnvironmentProblem(
            f"AWS profile {profile!r} not found{where}: run `aws configure sso --profile {profile}`, "
            "or set AWS_PROFILE_<ENV> or AWS_PROFILE to a profile of ~/.aws/config"
        ) from err
    except BotoCoreError as err:
        raise EnvironmentProblem(f"cannot read the AWS credentials{where}: {err}") from err
    if found is None:
        raise EnvironmentProblem(
            f"no AWS credentials{where}: run `aws sso login`, or set AWS_PROFILE_<ENV> or AWS_PROFILE "
            "(or the keys, in .env or the environment)"
        )
    return session


class ClientFactory:
    """Builds boto3 clients for one account and region; endpoints maps a service (or '*') to a custom endpoint.

    credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, e.g. from .env) are used when no
    profile is; origin says which env asked for which profile, in the errors.
    """

    def __init__(
        self,
        region: str,
        profile: str | None = None,
        endpoints: Mapping[str, str] | None = None,
        local_credentials: bool = False,
        credentials: Mapping[str, str] | None = None,
        origin: str = "",
    ) -> None:
        self.region = region
        self.profile = profile
        self.endpoints = dict(endpoints or {})
        self._lock = threading.Lock()  # a boto3 session is not thread-safe; the clients it makes are
        self._lambda_clients: dict[int, LambdaClient] = {}  # by read timeout: one client serves every step
        self._s3: S3Client | None = None
        if local_credentials:
            self.session = _isolated_session(region)
        else:
            self.session = _user_session(region, profile, credentials or {}, origin)

    @classmethod
    def local(cls, region: str, endpoint: str) -> ClientFactory:
        """Clients for the embedded AWS at endpoint, isolated from the user's AWS settings."""
        return cls(region, endpoints={"*": endpoint}, local_credentials=True)

    def _endpoint(self, service: str) -> str | None:
        return self.endpoints.get(service) or self.endpoints.get("*")

    def _client(self, service: str, config: Config | None = None) -> Any:
        """A new client (call with self._lock held: a boto3 session is not thread-safe; the clients it makes are)."""
        session: Any = self.session  # the stubs type client() per literal service name
        return session.client(service, endpoint_url=self._endpoint(service), config=config)

    def s3(self) -> S3Client:
        """The S3 client, made once: the runs of many clients in threads share it."""
        with self._lock:
            if self._s3 is None:
                self._s3 = self._client("s3", Config(retries={"mode": "standard", "max_attempts": 3}))
            return self._s3

    def logs(self) -> CloudWatchLogsClient:
        with self._lock:
            return self._client("logs")

    def sfn(self) -> SFNClient:
        with self._lock:
            return self._client("stepfunctions")

    def lambda_(self, read_timeout: float = 60) -> LambdaClient:
        """A Lambda client that waits read_timeout (whole seconds, rounded up) for an answer and never retries an
        invoke by itself; made once per timeout, since making a client costs more CPU than an invoke."""
        seconds = math.ceil(read_timeout)
        with self._lock:
            if seconds not in self._lambda_clients:
                config = Config(
                    read_timeout=seconds, connect_timeout=10, tcp_keepalive=True, retries={"total_max_attempts": 1}
                )
                self._lambda_clients[seconds] = self._client("lambda", config)
            return self._lambda_clients[seconds]


def error_code(err: ClientError) -> str:
    """The error code AWS answered with (e.g. NoSuchKey, AccessDenied, 404)."""
    return str(err.response.get("Error", {}).get("Code", ""))


def is_missing(err: ClientError) -> bool:
    """Whether the error says the object, key, bucket or function does not exist."""
    return error_code(err) in NOT_FOUND


def _code(err: ClientError) -> tuple[str, str, int]:
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return error_code(err), str(err.response.get("Error", {}).get("Message", "")), int(status or 0)


def describe_error(err: Exception, action: str, resource: str) -> ToolkitError:
    """Map a boto error raised by action on resource to one of our errors, with a line that says what to do."""
    if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
        return EnvironmentProblem(f"no AWS credentials for {action}: run `aws sso login` or set AWS_PROFILE")
    if isinstance(err, (SSOTokenLoadError, UnauthorizedSSOTokenError, TokenRetrievalError)):
        return EnvironmentProblem(f"your AWS SSO session has expired ({action}): run `aws sso login`")
    if isinstance(err, EndpointConnectionError):
        return EnvironmentProblem(
            f"cannot reach the endpoint for {action} on {resource}: check the network or endpoint"
        )
    if isinstance(err, ClientError):
        code, message, status = _code(err)
        if code in NOT_FOUND:
            return EnvironmentProblem(f"{resource} not found ({action}): check the env and that it is deployed")
        if code in BAD_CREDENTIALS:
            return EnvironmentProblem(
                f"AWS rejected the credentials ({code}): run `aws sso login` or check AWS_PROFILE"
            )
        if code in DENIED or status == 403:
            return EnvironmentProblem(f"access denied: {action} on {resource} ({code}); ask for that permission")
        return EnvironmentProblem(f"{action} on {resource} failed: {code} {message}".strip())
    return EnvironmentProblem(f"{action} on {resource} failed: {err}")


@contextmanager
def aws_errors(action: str, resource: str) -> Iterator[None]:
    """Translate boto errors raised in the block into our errors."""
    try:
        yield
    except (BotoCoreError, ClientError) as err:
        raise describe_error(err, action, resource) from err


def read_limited(answer: Any, uri: str, limit: int, setting: str) -> bytes:
    """The body of a GetObject answer, read only if it is at most limit bytes (TooLarge otherwise, naming setting)."""
    size = answer.get("ContentLength")
    body = answer["Body"]
    try:
        data = b"" if size is not None and size > limit else body.read(limit + 1)
    finally:
        body.close()
    if len(data) > limit or (size or 0) > limit:
        shown = f"{size} bytes" if size is not None else f"over {limit} bytes"
        raise TooLarge(f"{uri} is {shown}, over {setting}={limit}: not read; raise {setting} if it really is that big")
    return data


def function_configurations(
    client: LambdaClient, functions: Mapping[str, str], env: str | None = None, none_if_denied: bool = False
) -> dict[str, dict[str, Any] | None]:
    """Each function's configuration (functions: step -> name), all read at once: on AWS each is a round trip."""
    found = all_at_once(
        [functools.partial(function_configuration, client, n, env, none_if_denied) for n in functions.values()]
    )
    return dict(zip(functions, found, strict=True))


def function_configuration(
    client: LambdaClient, name: str, env: str | None = None, none_if_denied: bool = False
) -> dict[str, Any] | None:
    """GetFunctionConfiguration for name; None when reading it is denied and none_if_denied (a narrow IAM policy)."""
    try:
        return dict(client.get_function_configuration(FunctionName=name))
    except ClientError as err:
        if none_if_denied and error_code(err) in DENIED:
            return None
        where = f"function {name}" + (f" ({env})" if env else "")
        raise describe_error(err, "lambda:GetFunctionConfiguration", where) from err
    except BotoCoreError as err:
        raise describe_error(err, "lambda:GetFunctionConfiguration", f"function {name}") from err


def fetch_log(factory: ClientFactory, function: str, request_id: str, since: datetime) -> str | None:
    """The invocation's log lines from CloudWatch Logs, or None when they cannot be read (best effort)."""
    try:
        logs = factory.logs()
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=f"/aws/lambda/{function}",
            startTime=int((since - timedelta(minutes=1)).timestamp() * 1000),
            filterPattern=f'"{request_id}"',
        )
        lines = [event["message"].rstrip("\n") for page in pages for event in page.get("events", [])]
    except (BotoCoreError, ClientError):
        return None
    return "\n".join(lines) + "\n" if lines else None


def _did_not_run(err: Exception) -> bool:
    """Whether an Invoke error proves the function did not run: throttled, a modeled 5xx, or no connection made."""
    if isinstance(err, EndpointConnectionError):
        return True
    if isinstance(err, ClientError):
        code, _, status = _code(err)
        return code in THROTTLED or status == 429 or status >= 500
    return False


def invoke(
    client: LambdaClient, name: str, event: dict[str, Any], sleep: Callable[[float], None] = time.sleep
) -> Invocation:
    """Invoke name synchronously with the log tail.

    Retried with backoff only when the function provably did not run; a request sent but unanswered is
    OutcomeUnknown and is never sent again.
    """
    for attempt in range(1, INVOKE_ATTEMPTS + 1):
        sent = datetime.now(UTC)
        try:
            answer = client.invoke(
                FunctionName=name, InvocationType="RequestResponse", LogType="Tail", Payload=json.dumps(event).encode()
            )
            break
        except (ReadTimeoutError, ConnectionClosedError) as err:
            since = sent.strftime("%Y-%m-%dT%H:%M:%SZ")
            raise OutcomeUnknown(
                f"no answer from {name} ({type(err).__name__}) for a request sent at {since}; it may have run: "
                f"aws logs tail /aws/lambda/{name} --since {since} --format short"
            ) from err
        except (BotoCoreError, ClientError) as err:
            if not _did_not_run(err):
                raise describe_error(err, "lambda:InvokeFunction", f"function {name}") from err
            if attempt == INVOKE_ATTEMPTS and isinstance(err, EndpointConnectionError):
                raise describe_error(err, "lambda:InvokeFunction", f"function {name}") from err
            if attempt == INVOKE_ATTEMPTS:
                reason = _code(err)[0] if isinstance(err, ClientError) else type(err).__name__
                raise StepFailed(
                    f"{name} was not run after {attempt} attempts ({reason}): retry later or raise its concurrency"
                ) from err
            sleep(2 ** (attempt - 1))
    raw = answer["Payload"].read()
    try:
        payload: Any = parse_json(raw, allow_nan=True) if raw else None
    except TooDeep as err:  # kept whole, it would break every walk over the record
        payload = f"(an answer of {len(raw)} bytes, not kept: its JSON is {err})"
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
        attempts=attempt,
    )


def tested_version(configuration: dict[str, Any] | None) -> dict[str, Any] | None:
    """What was tested: the code's digest, version and modification time (None when the configuration was denied)."""
    if configuration is None:
        return None
    keys = ("CodeSha256", "Version", "LastModified", "Timeout", "MemorySize", "Architectures")
    return {key: configuration.get(key) for key in keys}
