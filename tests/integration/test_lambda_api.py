"""The embedded Lambda API as real clients see it: boto3, the AWS CLI (its own botocore) and raw HTTP, against a real
embedded server on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tasks.local.lambda_api import LAMBDA_PATH
from tasks.local.server import EmbeddedAws
from tasks.masking import MASK
from tasks.settings import Settings
from tests.conftest import REPO, local_aws_server, safe_environ, settings_for

INGEST = "vectora-inbox-ingest-v2-local"
ACCOUNT = "123456789012"  # moto's, which its STS answers
STEPS = ("ingest", "normalize-score", "newsletter")
FUNCTIONS = sorted(f"vectora-inbox-{step}-v2-{env}" for step in STEPS for env in ("local", "dev"))
INVOKE = f"/2015-03-31/functions/{INGEST}/invocations"
ECHO = """
    import pathlib
    def lambda_handler(event, context):
        if "marker" in event:
            pathlib.Path(event["marker"]).touch()
        return event
"""


class Api:
    """A running embedded AWS serving local and dev, its ingest handler answering the event it got."""

    def __init__(self, settings: Settings, endpoint: str) -> None:
        self.settings, self.endpoint = settings, endpoint
        self.port = int(endpoint.rsplit(":", 1)[1])

    def client(self, service: str = "lambda", **config: Any) -> Any:
        """A plain boto3 client that never retries (config: more botocore Config options)."""
        retries = Config(retries={"total_max_attempts": 1}, **config)
        return boto3.client(service, endpoint_url=self.endpoint, region_name=self.settings.region, config=retries)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The AWS CLI, as a user runs it against the endpoint (dummy keys, no config, HOME the test's own)."""
        return aws_cli(self.endpoint, self.settings.region, *args)

    def http(self, method: str, path: str, body: Any = None, **headers: str) -> Reply:
        """A raw HTTP request (unsigned: the local Lambda API checks no signature); an iterable body is sent chunked."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            chunked = body is not None and not isinstance(body, bytes)
            connection.request(method, path, body=body, headers=headers, encode_chunked=chunked)
            response = connection.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            connection.close()


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, headers, body."""

    status: int
    headers: Message
    body: bytes

    def error(self) -> tuple[int, str | None, str]:
        """A Lambda error answer's status, x-amzn-ErrorType and message; it must carry a request id."""
        assert self.headers["x-amzn-RequestId"] and self.headers["Content-Type"] == "application/json"
        return self.status, self.headers["x-amzn-ErrorType"], json.loads(self.body)["message"]


def aws_cli(endpoint: str, region: str, *args: str) -> subprocess.CompletedProcess[str]:
    environ = safe_environ(AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION=region, AWS_MAX_ATTEMPTS="1", AWS_PAGER="")
    return subprocess.run(
        [sys.executable, "-m", "awscli", *args, "--output", "json"],
        env=environ,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


@pytest.fixture
def api(contexts_dir: Path, tmp_path: Path) -> Iterator[Api]:
    folder = tmp_path / "echo"
    folder.mkdir()
    (folder / "echo.py").write_text(textwrap.dedent(ECHO))
    settings = settings_for(contexts_dir, LOCAL_HANDLER_INGEST=f"{folder}:echo.lambda_handler")
    with EmbeddedAws(settings, envs=("local", "dev")).running() as endpoint:
        yield Api(settings, endpoint)


def refused(call: Callable[[], Any]) -> dict[str, Any]:
    """The error answer of a call that must fail: its code, status and request id."""
    with pytest.raises(ClientError) as raised:
        call()
    response = raised.value.response
    metadata = response["ResponseMetadata"]
    return {"code": response["Error"]["Code"], "status": metadata["HTTPStatusCode"], "id": metadata.get("RequestId")}


# Invoke


@pytest.mark.parametrize("kind", ["Bogus", "dryrun", "requestresponse"])
def test_an_unknown_invocation_type_is_refused_and_runs_nothing(api: Api, tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "ran"
    answer = api.http("POST", INVOKE, json.dumps({"marker": str(marker)}).encode(), **{"X-Amz-Invocation-Type": kind})
    status, error_type, message = answer.error()
    assert (status, error_type) == (400, "InvalidParameterValueException")
    assert message == f"Unsupported InvocationType '{kind}': expected one of RequestResponse, Event, DryRun"
    assert not marker.exists()


def test_the_cli_refuses_an_unknown_invocation_type_and_runs_nothing(api: Api, tmp_path: Path) -> None:
    marker, out = tmp_path / "ran", str(tmp_path / "out.json")
    payload = ("--payload", json.dumps({"marker": str(marker)}))  # CLI v1 sends the text as it is
    result = api.cli("lambda", "invoke", "--function-name", INGEST, "--invocation-type", "Bogus", *payload, out)
    assert result.returncode == 255 and "(InvalidParameterValueException)" in result.stderr
    assert not marker.exists()
    dry = api.cli("lambda", "invoke", "--function-name", INGEST, "--invocation-type", "DryRun", *payload, out)
    assert dry.returncode == 0 and json.loads(dry.stdout)["StatusCode"] == 204 and not marker.exists()


def test_a_content_length_that_is_not_a_number_is_400(api: Api, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    answer = api.http("POST", INVOKE, json.dumps({"marker": str(marker)}).encode(), **{"Content-Length": "abc"})
    assert answer.error() == (400, "InvalidRequestContentException", "Content-Length 'abc' is not a number of bytes")
    assert not marker.exists()


def test_a_chunked_invoke_body_is_read_whole(api: Api) -> None:
    event = {"client_id": "lai_weekly_v1", "blob": "x" * 200_000}
    text = json.dumps(event).encode()
    answer = api.http("POST", INVOKE, iter([text[:70_000], text[70_000:150_000], text[150_000:]]))
    assert answer.status == 200 and json.loads(answer.body) == event


def test_a_chunked_event_body_over_its_limit_is_413(api: Api, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = json.dumps({"marker": str(marker), "blob": "x" * 300_000}).encode()
    answer = api.http("POST", INVOKE, iter([text]), **{"X-Amz-Invocation-Type": "Event"})
    assert answer.error()[:2] == (413, "RequestTooLargeException")
    assert not marker.exists()


# Listing, configuration, waiters


def test_list_functions_pages_with_max_items_and_marker(api: Api) -> None:
    client = api.client()
    first = client.list_functions(MaxItems=4)
    assert [f["FunctionName"] for f in first["Functions"]] == FUNCTIONS[:4]
    second = client.list_functions(MaxItems=4, Marker=first["NextMarker"])
    assert [f["FunctionName"] for f in second["Functions"]] == FUNCTIONS[4:] and "NextMarker" not in second
    assert [f["FunctionName"] for f in client.list_functions()["Functions"]] == FUNCTIONS
    unchecked = api.client(parameter_validation=False)
    for bad in (0, 10001):
        answer = refused(lambda n=bad: unchecked.list_functions(MaxItems=n))
        assert (answer["code"], answer["status"]) == ("ValidationException", 400) and answer["id"]


def test_the_cli_pages_through_the_functions_by_their_markers(api: Api) -> None:
    listed = api.cli("lambda", "list-functions", "--page-size", "2", "--query", "Functions[].FunctionName", "--debug")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == FUNCTIONS
    assert listed.stderr.count("Making request for OperationModel(name=ListFunctions)") == 3  # 3 pages of 2


def test_listed_functions_show_variable_names_never_their_values(api: Api) -> None:
    client = api.client()
    configured = client.get_function_configuration(FunctionName=INGEST)["Environment"]["Variables"]
    assert configured["CONFIG_BUCKET"] == "vectora-inbox-config-local"  # a function's own configuration: as Lambda
    for listing in (
        client.list_functions()["Functions"],
        client.list_functions(FunctionVersion="ALL")["Functions"],
        client.list_versions_by_function(FunctionName=INGEST)["Versions"],
    ):
        listed = next(f for f in listing if f["FunctionName"] == INGEST)["Environment"]["Variables"]
        assert listed == dict.fromkeys(configured, MASK)


def test_a_configuration_carries_what_lambdas_waiters_and_clients_read(api: Api) -> None:
    client = api.client()
    configuration = client.get_function_configuration(FunctionName=INGEST)
    assert configuration["State"] == "Active" and configuration["LastUpdateStatus"] == "Successful"
    code = api.settings.local_handlers["ingest"].source_dir / "echo.py"
    assert configuration["PackageType"] == "Zip" and configuration["CodeSize"] == len(code.read_bytes())
    assert configuration["Role"].startswith("arn:aws:iam::") and configuration["Description"] == ""
    assert configuration["EphemeralStorage"] == {"Size": 512}
    assert configuration["TracingConfig"] == {"Mode": "PassThrough"}
    assert configuration["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{INGEST}"}
    assert configuration["RevisionId"] == client.get_function(FunctionName=INGEST)["Configuration"]["RevisionId"]
    once = {"Delay": 1, "MaxAttempts": 1}
    waiters = ("function_exists", "function_active_v2", "function_updated_v2", "function_active", "function_updated")
    for waiter in (*waiters, "published_version_active"):
        client.get_waiter(waiter).wait(FunctionName=INGEST, WaiterConfig=once)


# Aliases, versions, concurrency, tags, account settings


@pytest.mark.parametrize(
    ("operation", "arguments", "expected"),
    [
        ("list_aliases", {"FunctionName": INGEST}, {"Aliases": []}),
        ("get_function_concurrency", {"FunctionName": INGEST}, {"ReservedConcurrentExecutions": 10}),
        ("list_tags", {"Resource": f"arn:aws:lambda:eu-west-3:{ACCOUNT}:function:{INGEST}"}, {"Tags": {}}),
    ],
)
def test_what_a_function_has_not_is_answered_as_lambda_does(
    api: Api, operation: str, arguments: dict[str, str], expected: dict[str, Any]
) -> None:
    client = api.client()
    answer = getattr(client, operation)(**arguments)
    assert {k: v for k, v in answer.items() if k != "ResponseMetadata"} == expected
    unknown = {k: v.replace("-local", "-stage") for k, v in arguments.items()}
    missing = refused(lambda: getattr(client, operation)(**unknown))
    assert (missing["code"], missing["status"]) == ("ResourceNotFoundException", 404) and missing["id"]


def test_versions_alias_and_account_settings(api: Api) -> None:
    client = api.client()
    versions = client.list_versions_by_function(FunctionName=INGEST)["Versions"]
    assert [(v["FunctionName"], v["Version"]) for v in versions] == [(INGEST, "$LATEST")]
    alias = refused(lambda: client.get_alias(FunctionName=INGEST, Name="live"))
    assert (alias["code"], alias["status"]) == ("ResourceNotFoundException", 404)
    settings = client.get_account_settings()
    assert settings["AccountUsage"]["FunctionCount"] == 6
    assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 1000 - 6 * 10


def test_the_cli_lists_aliases_concurrency_tags_and_versions(api: Api) -> None:
    aliases = api.cli("lambda", "list-aliases", "--function-name", INGEST)
    assert aliases.returncode == 0 and json.loads(aliases.stdout) == {"Aliases": []}, aliases.stderr
    concurrency = api.cli("lambda", "get-function-concurrency", "--function-name", INGEST)
    assert json.loads(concurrency.stdout) == {"ReservedConcurrentExecutions": 10}, concurrency.stderr
    arn = f"arn:aws:lambda:{api.settings.region}:{ACCOUNT}:function:{INGEST}"
    assert json.loads(api.cli("lambda", "list-tags", "--resource", arn).stdout) == {"Tags": {}}
    versions = api.cli(
        "lambda", "list-versions-by-function", "--function-name", INGEST, "--query", "Versions[].Version"
    )
    assert json.loads(versions.stdout) == ["$LATEST"]


# Accounts, regions, ARNs


def test_one_account_for_every_lambda_and_sts_answer(api: Api) -> None:
    identity = api.client("sts").get_caller_identity()
    client = api.client()
    arns = [f["FunctionArn"] for f in client.list_functions()["Functions"]]
    arns.append(client.get_function(FunctionName=INGEST)["Configuration"]["FunctionArn"])
    assert {arn.split(":")[4] for arn in arns} == {identity["Account"]} == {ACCOUNT}
    assert client.get_function_configuration(FunctionName=INGEST)["Role"].split(":")[4] == identity["Account"]


@pytest.mark.parametrize(
    ("foreign", "local"),
    [
        (
            f"arn:aws:lambda:eu-west-3:111111111111:function:{INGEST}",
            f"arn:aws:lambda:eu-west-3:{ACCOUNT}:function:{INGEST}",
        ),
        (f"111111111111:function:{INGEST}", f"{ACCOUNT}:function:{INGEST}"),
        (
            f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{INGEST}",
            f"arn:aws:lambda:eu-west-3:{ACCOUNT}:function:{INGEST}",
        ),
    ],
)
def test_an_arn_of_another_account_or_region_is_not_found(api: Api, tmp_path: Path, foreign: str, local: str) -> None:
    client = api.client()
    marker = tmp_path / "ran"
    event = json.dumps({"marker": str(marker)})
    for call in (
        lambda: client.get_function(FunctionName=foreign),
        lambda: client.invoke(FunctionName=foreign, Payload=event),
    ):
        answer = refused(call)
        assert (answer["code"], answer["status"]) == ("ResourceNotFoundException", 404) and answer["id"]
    assert not marker.exists()
    assert client.get_function(FunctionName=local)["Configuration"]["FunctionName"] == INGEST
    client.invoke(FunctionName=f"{local}:$LATEST", Payload=event)
    assert marker.exists()


# Routes


def test_every_lambda_operation_is_routed_to_the_lambda_api() -> None:
    model = botocore.session.get_session().get_service_model("lambda")
    paths = {model.operation_model(name).http["requestUri"].split("?")[0] for name in model.operation_names}
    assert all(LAMBDA_PATH.match(path.replace("{", "x").replace("}", "")) for path in paths)
    others = ("/vectora-inbox-data-local/2015-03-31/functions", "/2013-04-01/hostedzone", "/2020-05-31/distribution")
    for other in (*others, "/", "/moto-api/reset"):
        assert not LAMBDA_PATH.match(other)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/2015-03-31/nothing-here"),
        ("DELETE", f"/2015-03-31/functions/{INGEST}"),
        ("GET", "/2018-10-31/layers"),
        ("PUT", f"/2015-03-31/functions/{INGEST}/configuration"),
    ],
)
def test_every_unknown_route_answers_lambdas_json_error(api: Api, method: str, path: str) -> None:
    status, error_type, message = api.http(method, path, b"{}" if method == "PUT" else None).error()
    assert (status, error_type) == (404, "UnknownOperationException")
    assert message.startswith(f"{method} {path} is not an operation the local Lambda serves (it serves ")


def test_the_cli_names_an_operation_the_local_lambda_does_not_serve(api: Api) -> None:
    result = api.cli("lambda", "list-layers")
    assert result.returncode == 255 and "(UnknownOperationException)" in result.stderr
    assert "is not an operation the local Lambda serves" in result.stderr


# Through `make local-aws`'s own task


def test_the_cli_against_local_aws_finds_the_account_and_waits_for_a_function() -> None:
    with local_aws_server(REPO) as flows:
        endpoint = flows["AWS_ENDPOINT_URL"]
        region = "eu-west-3"
        identity = aws_cli(endpoint, region, "sts", "get-caller-identity")
        assert identity.returncode == 0, identity.stderr
        account = json.loads(identity.stdout)["Account"]
        name = "vectora-inbox-ingest-v2-dev"
        waited = aws_cli(endpoint, region, "lambda", "wait", "function-active-v2", "--function-name", name)
        assert waited.returncode == 0, waited.stderr
        updated = aws_cli(endpoint, region, "lambda", "wait", "function-updated-v2", "--function-name", name)
        assert updated.returncode == 0, updated.stderr
        function = aws_cli(endpoint, region, "lambda", "get-function", "--function-name", name)
        arn = json.loads(function.stdout)["Configuration"]["FunctionArn"]
        assert arn == f"arn:aws:lambda:{region}:{account}:function:{name}"
