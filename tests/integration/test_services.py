"""Services beyond S3 for local handlers, through boto3 and urllib against the embedded AWS on 127.0.0.1.

The "real" Bedrock and the "real" web are fake servers on 127.0.0.1: nothing here reaches AWS or the internet.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tasks.contexts.store import ContextStore
from tasks.errors import ConfigError
from tasks.flows.local_e2e import LocalE2E
from tasks.local.sample_feeds import HOST
from tasks.local.server import EmbeddedAws
from tasks.local.services import Services, function_environment
from tests.conftest import SAFE_ENV, settings_for

MODEL = "anthropic.claude-3-sonnet-20240229-v1:0"
HANDLER_KEYS = {"aws_access_key_id": "handler-dummy", "aws_secret_access_key": "handler-dummy"}


def messages_body(text: str) -> str:
    return json.dumps(
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        }
    )


@dataclass
class FakeUpstream:
    """A "real" service on 127.0.0.1: answers every request with answer and keeps what it received."""

    answer: bytes
    content_type: str = "application/json"
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@contextmanager
def fake_upstream(answer: bytes, content_type: str = "application/json") -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(answer, content_type)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            upstream.received.append({"method": self.command, "path": self.path, "headers": self.headers, "body": body})
            self.send_response(200)
            self.send_header("Content-Type", upstream.content_type)
            self.send_header("Content-Length", str(len(upstream.answer)))
            self.end_headers()
            self.wfile.write(upstream.answer)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    upstream.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def embedded_aws(contexts_dir: Path, **variables: str) -> Iterator[EmbeddedAws]:
    server = EmbeddedAws(settings_for(contexts_dir, **variables))
    with server.running():
        yield server


def bedrock(endpoint: str) -> Any:
    """A bedrock-runtime client as a handler holds one: dummy keys, the embedded AWS as endpoint, no retries."""
    config = Config(retries={"total_max_attempts": 1})
    return boto3.client("bedrock-runtime", "us-east-1", endpoint_url=endpoint, config=config, **HANDLER_KEYS)


def invoke(endpoint: str, text: str) -> dict[str, Any]:
    answer = bedrock(endpoint).invoke_model(modelId=MODEL, body=messages_body(text), contentType="application/json")
    return json.loads(answer["body"].read())


def through_proxy(endpoint: str, url: str) -> bytes:
    """GET url the way a handler does: through the embedded server as its HTTP proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": endpoint, "https": endpoint}))
    with opener.open(url, timeout=10) as answer:
        return answer.read()


pytestmark = pytest.mark.usefixtures("no_developer_proxy")


def test_bedrock_denied_fails_at_once_naming_the_setting(contexts_dir: Path) -> None:
    with embedded_aws(contexts_dir, LOCAL_SERVICES="bedrock=deny") as server:
        with pytest.raises(ClientError) as caught:
            invoke(server.endpoint, "Anything.")
        assert server.services.notes() == ("bedrock (deny): 1 call denied (LOCAL_SERVICES)",)
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "LOCAL_SERVICES=bedrock=<mode>" in caught.value.response["Error"]["Message"]


def test_bedrock_stub_is_the_default_and_deterministic(contexts_dir: Path) -> None:
    text = "Summarize this.\n\nCamurus signs a license with Lilly. The deal is worth USD 100 million."
    with embedded_aws(contexts_dir) as server:
        first, second = invoke(server.endpoint, text), invoke(server.endpoint, text)
        other = invoke(server.endpoint, "Summarize.\n\nNanexa expands capacity. More later.")
        notes = server.services.notes()
    assert first == second and first["model"] == MODEL
    assert first["content"] == [{"type": "text", "text": "Camurus signs a license with Lilly."}]
    assert other["content"][0]["text"] == "Nanexa expands capacity." and other["id"] != first["id"]
    assert notes == ("bedrock (stub): 3 calls answered by the stub (deterministic, not the real service)",)


def test_bedrock_stub_refuses_what_it_cannot_answer(contexts_dir: Path) -> None:
    with embedded_aws(contexts_dir) as server:
        client = bedrock(server.endpoint)
        with pytest.raises(ClientError) as caught:
            client.invoke_model(modelId=MODEL, body=json.dumps({"inputText": "titan style"}))
        assert server.services.notes()[0].startswith("bedrock (stub): 1 call refused by the stub")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "LOCAL_SERVICES=bedrock=replay" in caught.value.response["Error"]["Message"]


def valid_signature(received: dict[str, Any], credentials: Credentials) -> bool:
    """Whether the request's SigV4 signature is right for credentials (recomputed from what was received)."""
    headers = received["headers"]
    scope = re.search(
        r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
        r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>\w+)",
        headers["Authorization"],
    )
    assert scope is not None
    signed = {name: headers[name] for name in scope["signed"].split(";")}
    request = AWSRequest(received["method"], f"http://{headers['Host']}{received['path']}", signed, received["body"])
    request.context["timestamp"] = headers["X-Amz-Date"]
    signer = SigV4Auth(credentials, scope["service"], scope["region"])
    string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
    return signer.signature(string_to_sign, request) == scope["signature"]


def test_passthrough_resigns_with_the_users_credentials_and_forwards(contexts_dir: Path) -> None:
    real_answer = {"content": [{"type": "text", "text": "from the real model"}]}
    with fake_upstream(json.dumps(real_answer).encode()) as upstream:
        with embedded_aws(contexts_dir, LOCAL_SERVICES="bedrock=passthrough", LOCAL_AWS_UPSTREAM=upstream.url) as aws:
            assert invoke(aws.endpoint, "Hello.") == real_answer
            notes = aws.services.notes()
    (received,) = upstream.received
    user = Credentials(SAFE_ENV["AWS_ACCESS_KEY_ID"], SAFE_ENV["AWS_SECRET_ACCESS_KEY"], SAFE_ENV["AWS_SESSION_TOKEN"])
    assert received["path"] == "/model/anthropic.claude-3-sonnet-20240229-v1%3A0/invoke"
    assert json.loads(received["body"]) == json.loads(messages_body("Hello."))
    assert f"Credential={user.access_key}/" in received["headers"]["Authorization"]
    assert "/us-east-1/bedrock/aws4_request" in received["headers"]["Authorization"]
    assert received["headers"]["X-Amz-Security-Token"] == user.token
    assert valid_signature(received, user)
    assert not valid_signature(received, Credentials("handler-dummy", "handler-dummy"))
    assert notes == ("bedrock (passthrough): 1 call passed through to the real service",)


def test_bedrock_recorded_once_replays_offline(contexts_dir: Path, tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    real_answer = {"id": "msg_real", "content": [{"type": "text", "text": "A real summary."}]}
    with fake_upstream(json.dumps(real_answer).encode()) as upstream:
        variables = {"LOCAL_SERVICES": "bedrock=record", "LOCAL_AWS_UPSTREAM": upstream.url}
        with embedded_aws(contexts_dir, LOCAL_RECORDINGS=str(recordings), **variables) as aws:
            assert invoke(aws.endpoint, "Item one.") == real_answer
            assert aws.services.notes() == ("bedrock (record): 1 call passed through to the real service and recorded",)
    (saved,) = recordings.rglob("*.json")
    assert saved.parent == recordings / "bedrock" / MODEL.replace(":", "_")
    assert "handler-dummy" not in saved.read_text() and "Authorization" not in saved.read_text()
    with embedded_aws(contexts_dir, LOCAL_SERVICES="bedrock=replay", LOCAL_RECORDINGS=str(recordings)) as aws:
        assert invoke(aws.endpoint, "Item one.") == real_answer  # the fake "real" Bedrock is gone
        with pytest.raises(ClientError) as caught:
            invoke(aws.endpoint, "Item two, never recorded.")
        notes = aws.services.notes()
    assert caught.value.response["Error"]["Code"] == "LocalRecordingNotFound"
    assert "LOCAL_SERVICES=bedrock=record" in caught.value.response["Error"]["Message"]
    assert notes == (
        "bedrock (replay): 1 call had no recording in recordings and failed",
        "bedrock (replay): 1 call replayed from recordings in recordings (not live)",
    )


def test_a_feed_recorded_once_replays_offline(contexts_dir: Path, tmp_path: Path) -> None:
    feed = b"<?xml version='1.0'?><rss version='2.0'><channel><title>real</title></channel></rss>"
    recordings = str(tmp_path / "recordings")
    with fake_upstream(feed, "application/rss+xml") as web:
        url = f"{web.url}/feed.xml"
        with embedded_aws(contexts_dir, LOCAL_SERVICES="http=record", LOCAL_RECORDINGS=recordings) as aws:
            assert through_proxy(aws.endpoint, url) == feed
    assert [r["path"] for r in web.received] == ["/feed.xml"]
    with embedded_aws(contexts_dir, LOCAL_RECORDINGS=recordings) as aws:  # http=replay is the default
        assert through_proxy(aws.endpoint, url) == feed
        with pytest.raises(urllib.error.HTTPError) as caught:
            through_proxy(aws.endpoint, f"{web.url}/other.xml")
        notes = aws.services.notes()
    assert caught.value.code == 404 and b"LOCAL_SERVICES=http=record" in caught.value.read()
    assert "http (replay): 1 request replayed from recordings in recordings (not live)" in notes


def test_the_web_denied_and_https_refused_unless_passed_through(contexts_dir: Path) -> None:
    with embedded_aws(contexts_dir, LOCAL_SERVICES="http=deny") as aws:
        with pytest.raises(urllib.error.HTTPError) as caught:
            through_proxy(aws.endpoint, "http://news.invalid/feed.xml")
        assert caught.value.code == 403 and b"LOCAL_SERVICES=http=<mode>" in caught.value.read()
        with pytest.raises(urllib.error.URLError, match="403"):
            through_proxy(aws.endpoint, "https://news.invalid/feed.xml")
        assert aws.services.notes() == ("http (deny): 2 requests denied (LOCAL_SERVICES)",)


def test_https_is_tunnelled_to_the_real_host_in_passthrough(contexts_dir: Path) -> None:
    with fake_upstream(b"through the tunnel", "text/plain") as web:
        host, port = web.url.removeprefix("http://").split(":")
        with embedded_aws(contexts_dir, LOCAL_SERVICES="http=passthrough") as aws:
            proxy = http.client.HTTPConnection(aws.endpoint.removeprefix("http://"), timeout=10)
            proxy.set_tunnel(host, int(port))  # CONNECT, as a client does for https (no TLS here: same bytes)
            proxy.request("GET", "/secure.xml")
            answer = proxy.getresponse()
            assert (answer.status, answer.read()) == (200, b"through the tunnel")
            proxy.close()
            notes = aws.services.notes()
    assert [r["path"] for r in web.received] == ["/secure.xml"]
    assert notes == ("http (passthrough): 1 request tunnelled to the real host (https)",)


def test_the_sample_feeds_are_served_in_every_mode(contexts_dir: Path) -> None:
    with embedded_aws(contexts_dir, LOCAL_SERVICES="http=deny") as aws:
        feed = through_proxy(aws.endpoint, f"http://{HOST}/press_corporate__camurus.xml")
        with pytest.raises(urllib.error.HTTPError):
            through_proxy(aws.endpoint, f"http://{HOST}/no_such_source.xml")
        notes = aws.services.notes()
    assert feed.count(b"<item>") == 2 and b"<pubDate>" in feed
    assert notes == ("http (sample): 1 request served from the sample feeds (generated, not live)",)


def test_other_aws_services_are_denied_by_default(contexts_dir: Path) -> None:
    with embedded_aws(contexts_dir) as aws:
        sqs = boto3.client("sqs", "eu-west-3", endpoint_url=aws.endpoint, **HANDLER_KEYS)
        sns = boto3.client("sns", "eu-west-3", endpoint_url=aws.endpoint, **HANDLER_KEYS)
        for call in (sqs.list_queues, sns.list_topics):
            with pytest.raises(ClientError) as caught:
                call()
            assert caught.value.response["Error"]["Code"] in ("AccessDeniedException", "AccessDenied")
        assert "LOCAL_SERVICES=sns=<mode>" in caught.value.response["Error"]["Message"]
        s3 = boto3.client("s3", "eu-west-3", endpoint_url=aws.endpoint, **HANDLER_KEYS)
        assert s3.list_buckets()["Buckets"] == []  # S3 stays the embedded one, presigned URLs too
        s3.create_bucket(Bucket="bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
        s3.put_object(Bucket="bucket", Key="k", Body=b"embedded")
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "bucket", "Key": "k"})
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.read() == b"embedded"
        assert aws.services.notes() == (
            "sns (deny): 1 call denied (LOCAL_SERVICES)",
            "sqs (deny): 1 call denied (LOCAL_SERVICES)",
        )


def test_functions_send_the_web_through_the_embedded_server(contexts_dir: Path) -> None:
    settings = settings_for(contexts_dir, LOCAL_CA_DIR=str(contexts_dir / "ca"))
    variables = function_environment("http://127.0.0.1:4567", settings)
    assert variables["HTTP_PROXY"] == variables["https_proxy"] == "http://127.0.0.1:4567"
    assert "127.0.0.1" in variables["NO_PROXY"].split(",")  # boto3 still reaches the embedded AWS directly
    bundle = contexts_dir / "ca" / "bundle.pem"  # http=replay (the default): https answered with the clone's CA
    assert variables["SSL_CERT_FILE"] == variables["REQUESTS_CA_BUNDLE"] == variables["AWS_CA_BUNDLE"] == str(bundle)
    assert (contexts_dir / "ca" / "ca.key").stat().st_mode & 0o077 == 0  # the key is its user's only
    passthrough = settings_for(contexts_dir, LOCAL_SERVICES="http=passthrough")
    assert "SSL_CERT_FILE" not in function_environment("http://127.0.0.1:4567", passthrough)  # a raw tunnel


def test_a_bad_mode_is_refused_with_the_choices(contexts_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"bedrock=stub\|deny\|passthrough\|record\|replay"):
        settings_for(contexts_dir, LOCAL_SERVICES="bedrock=live")
    with pytest.raises(ConfigError, match=r"sqs=deny\|passthrough"):
        settings_for(contexts_dir, LOCAL_SERVICES="sqs=stub")


def test_a_run_with_bedrock_denied_fails_on_fallbacks(contexts_dir: Path, store: ContextStore) -> None:
    flow = LocalE2E(settings_for(contexts_dir, LOCAL_SERVICES="bedrock=deny"), store)
    record = flow.run(flow.context(None, "lai_weekly", "bedrock denied"))
    assert (record.status, record.steps[-1].step) == ("failed", "normalize-score")
    failed = {c.name for c in record.checks if c.step == "normalize-score" and c.failed}
    assert {"not_normalized_share", "entities_found"} <= failed


def test_services_notes_are_empty_when_nothing_was_called(contexts_dir: Path) -> None:
    assert Services(settings_for(contexts_dir)).notes() == ()
