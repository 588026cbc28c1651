"""The embedded AWS answers only its own clients, and passthrough sends the user's credentials to AWS only.

Each case is a real HTTP request to a real server on 127.0.0.1 carrying what an attacker would send: a browser page's
Origin, a rebound Host, a forged SigV4 scope, a local process posting to an environment's Runtime API.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tasks.local.request_guard import ADMIN_TOKEN_HEADER
from tasks.local.server import EmbeddedAws
from tests.conftest import settings_for
from tests.integration.test_services import embedded_aws, fake_upstream

INGEST = "vectora-inbox-ingest-v2-local"
SIGNED = "AWS4-HMAC-SHA256 Credential=handler-dummy/20260101/{region}/{service}/aws4_request, SignedHeaders=host, "
SIGNED += "Signature=" + "0" * 64


pytestmark = pytest.mark.usefixtures("no_developer_proxy")


def raw(endpoint: str, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    """One request with exactly these headers (Host included when given), as a browser or a forger sends it."""
    connection = http.client.HTTPConnection(endpoint.removeprefix("http://"), timeout=30)
    connection.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
    for name, value in {**headers, "Content-Length": str(len(body))}.items():
        connection.putheader(name, value)
    connection.endheaders(body)
    answer = connection.getresponse()
    result = answer.status, answer.read()
    connection.close()
    return result


def buckets(endpoint: str) -> list[str]:
    s3 = boto3.client("s3", "eu-west-3", endpoint_url=endpoint)
    return [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.fixture
def seeded(contexts_dir: Path) -> Iterator[Any]:
    """An embedded AWS with one bucket in its S3."""
    with embedded_aws(contexts_dir) as server:
        s3 = boto3.client("s3", "eu-west-3", endpoint_url=server.endpoint)
        s3.create_bucket(Bucket="kept", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
        yield server


def test_a_web_page_cannot_invoke_a_function_or_wipe_s3(seeded: Any) -> None:
    own_host = seeded.endpoint.removeprefix("http://")
    page = {"Host": own_host, "Origin": "http://evil.example", "Content-Type": "text/plain"}
    status, body = raw(seeded.endpoint, "POST", f"/2015-03-31/functions/{INGEST}/invocations", page, b"{}")
    assert status == 403 and b"Origin" in body
    assert raw(seeded.endpoint, "POST", "/moto-api/reset", page)[0] == 403
    assert raw(seeded.endpoint, "GET", "/kept", page)[0] == 403  # a CORS read of a bucket
    assert raw(seeded.endpoint, "OPTIONS", "/kept", page | {"Access-Control-Request-Method": "PUT"})[0] == 403
    assert buckets(seeded.endpoint) == ["kept"]


def test_a_rebound_host_name_is_refused(seeded: Any) -> None:
    """DNS rebinding: evil.example resolves to 127.0.0.1, so the browser sends Host: evil.example."""
    port = seeded.endpoint.rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", "127.0.0.1:1", "localhost", ""):
        status, body = raw(seeded.endpoint, "GET", "/2015-03-31/functions/", {"Host": host})
        assert status == 403 and b"Host" in body, host
    assert raw(seeded.endpoint, "GET", "/2015-03-31/functions/", {"Host": f"localhost:{port}"})[0] == 200
    own_origin = {"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}"}
    assert raw(seeded.endpoint, "GET", "/2015-03-31/functions/", own_origin)[0] == 200


def test_moto_admin_routes_need_the_servers_own_token(seeded: Any) -> None:
    own = {"Host": seeded.endpoint.removeprefix("http://")}
    assert raw(seeded.endpoint, "POST", "/moto-api/reset", own)[0] == 403
    assert raw(seeded.endpoint, "POST", "/moto-api/reset", own | {ADMIN_TOKEN_HEADER: "guess"})[0] == 403
    assert buckets(seeded.endpoint) == ["kept"]
    assert raw(seeded.endpoint, "POST", "/moto-api/reset", own | {ADMIN_TOKEN_HEADER: seeded.admin_token})[0] == 200
    assert buckets(seeded.endpoint) == []


class Listener:
    """A TCP listener on 127.0.0.3 that keeps every byte sent to it: where a forged scope would send credentials."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.3", 0))
        self.port = self.socket.getsockname()[1]
        self.received = b""
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.socket.accept()
                connection.settimeout(2)
                with contextlib.suppress(OSError):
                    self.received += connection.recv(65536)
                connection.close()


@pytest.mark.parametrize(
    ("service", "region"),
    [
        ("127.0.0.3:{port}#", "eu-west-3"),  # the endpoint's host, from the service name
        ("bedrock", "127.0.0.3:{port}#"),
        ("bedrock", "evil.example?"),  # bedrock-runtime.evil.example
        ("bedrock", "xx-nowhere-1"),
        ("nosuchservice", "eu-west-3"),
    ],
)
def test_passthrough_never_sends_credentials_where_a_request_says(
    contexts_dir: Path, service: str, region: str
) -> None:
    listener = Listener()
    scope = {"service": service.format(port=listener.port), "region": region.format(port=listener.port)}
    with embedded_aws(contexts_dir, LOCAL_SERVICES="bedrock=passthrough,*=passthrough") as server:
        headers = {"Host": server.endpoint.removeprefix("http://"), "Authorization": SIGNED.format(**scope)}
        headers["Content-Type"] = "application/json"
        status, body = raw(server.endpoint, "POST", "/model/m/invoke", headers, b"{}")
        notes = server.services.notes()
    assert status == 403 and json.loads(body)["__type"] == "LocalPassthroughRefused"
    assert "no credential sent" in json.loads(body)["message"]
    time.sleep(0.2)  # a connection, had one been made, would have been read by now
    assert listener.received == b""
    assert len(notes) == 1 and "refused: not an AWS service, region and endpoint" in notes[0]


def test_web_passthrough_keeps_the_handlers_own_authorization(contexts_dir: Path) -> None:
    with fake_upstream(b"ok", "text/plain") as web:
        with embedded_aws(contexts_dir, LOCAL_SERVICES="http=passthrough") as server:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": server.endpoint}))
            request = urllib.request.Request(f"{web.url}/api", headers={"Authorization": "Bearer the-handlers-own"})
            with opener.open(request, timeout=10) as answer:
                assert answer.read() == b"ok"
    (received,) = web.received
    assert received["headers"]["Authorization"] == "Bearer the-handlers-own"


FORGEABLE = """
    import json, os, pathlib, time
    def lambda_handler(event, context):
        folder = pathlib.Path(event["folder"])
        info = {"api": os.environ["AWS_LAMBDA_RUNTIME_API"], "request_id": context.aws_request_id}
        (folder / "info.json").write_text(json.dumps(info))
        while not (folder / "release").exists():
            time.sleep(0.01)
        return {"answer": "the handler's own"}
"""


def test_no_other_process_can_answer_for_an_environment(contexts_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "forgeable.py").write_text(textwrap.dedent(FORGEABLE))
    settings = settings_for(contexts_dir, LOCAL_HANDLER_INGEST=f"{tmp_path / 'code'}:forgeable.lambda_handler")
    with EmbeddedAws(settings).running() as endpoint:
        client = boto3.client("lambda", "eu-west-3", endpoint_url=endpoint)
        answers: list[Any] = []
        event = json.dumps({"folder": str(tmp_path)})
        call = threading.Thread(target=lambda: answers.append(client.invoke(FunctionName=INGEST, Payload=event)))
        call.start()
        deadline = time.monotonic() + 60
        while not (tmp_path / "info.json").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        info = json.loads((tmp_path / "info.json").read_text())
        runtime = f"http://{info['api']}"
        forged = b'{"errorType": "Forged", "errorMessage": "not the handler"}'
        invocation = f"/2018-06-01/runtime/invocation/{info['request_id']}"
        for path in ("/2018-06-01/runtime/init/error", f"{invocation}/response", f"{invocation}/error"):
            status, _ = raw(runtime, "POST", path, {"Host": info["api"]}, forged)
            assert status == 403, path
        assert raw(runtime, "GET", "/2018-06-01/runtime/invocation/next", {"Host": info["api"]})[0] == 403
        (tmp_path / "release").touch()
        call.join(timeout=60)
    (answer,) = answers
    assert "FunctionError" not in answer
    assert json.loads(answer["Payload"].read()) == {"answer": "the handler's own"}


DAEMON = """
    import os, pathlib, time
    def lambda_handler(event, context):
        if os.fork() == 0:
            os.setsid()  # leaves the sandbox's session and process group
            if os.fork() == 0:
                pathlib.Path(event["pid_file"]).write_text(str(os.getpid()))
                time.sleep(600)
            os._exit(0)
        return {"started": True}
"""


def test_a_handlers_setsid_daemon_ends_with_the_run(contexts_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "daemon.py").write_text(textwrap.dedent(DAEMON))
    settings = settings_for(contexts_dir, LOCAL_HANDLER_INGEST=f"{tmp_path / 'code'}:daemon.lambda_handler")
    pid_file = tmp_path / "daemon.pid"
    with EmbeddedAws(settings).running() as endpoint:
        client = boto3.client("lambda", "eu-west-3", endpoint_url=endpoint)
        client.invoke(FunctionName=INGEST, Payload=json.dumps({"pid_file": str(pid_file)}))
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        daemon = int(pid_file.read_text())
        assert alive(daemon)
    deadline = time.monotonic() + 30
    while alive(daemon) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(daemon)


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and os.path.exists(f"/proc/{pid}")
