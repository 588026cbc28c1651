"""The embedded AWS over real HTTP on 127.0.0.1: moto's S3 and the local Lambda runtime through boto3."""

from __future__ import annotations

import json
import signal
import socket
import textwrap
import time
from pathlib import Path

import pytest

from tasks.aws import clients as aws
from tasks.errors import EnvironmentProblem
from tasks.local.server import EmbeddedAws, create_buckets, upload_canonical
from tasks.pipeline.report_line import parse_report
from tasks.settings import Settings
from tests.conftest import REPO, local_aws_server, settings_for


def clients(settings: Settings, endpoint: str, read_timeout: float = 30) -> tuple:
    factory = aws.ClientFactory.local(settings.region, endpoint)
    return factory.s3(), factory.lambda_(read_timeout=read_timeout)


def test_s3_round_trip(settings: Settings, embedded: str) -> None:
    s3, _ = clients(settings, embedded)
    create_buckets(s3, ["vectora-inbox-data-local"], settings.region)
    s3.put_object(Bucket="vectora-inbox-data-local", Key="a/b.json", Body=b'{"x": 1}')
    assert s3.get_object(Bucket="vectora-inbox-data-local", Key="a/b.json")["Body"].read() == b'{"x": 1}'
    assert embedded.startswith("http://127.0.0.1:")


def test_the_sample_ingest_runs_through_boto3_invoke(settings: Settings, embedded: str) -> None:
    s3, lam = clients(settings, embedded)
    create_buckets(s3, [settings.config_bucket(), settings.data_bucket()], settings.region)
    upload_canonical(s3, settings.local_canonical_dir, settings.config_bucket())
    config = (REPO / "contexts" / "templates" / "lai_weekly.yaml").read_bytes()
    s3.put_object(Bucket=settings.config_bucket(), Key="clients/lai_weekly_v1.yaml", Body=config)
    result = aws.invoke(lam, settings.function_name("ingest"), {"client_id": "lai_weekly_v1"})
    assert result.function_error is None
    body = result.payload["body"]
    assert body["status"] == "success" and body["items_final"] > 0
    key = body["s3_output_path"].removeprefix(f"s3://{settings.data_bucket()}/")
    items = json.loads(s3.get_object(Bucket=settings.data_bucket(), Key=key)["Body"].read())
    assert len(items) == body["items_final"]
    report = parse_report(result.log_tail)
    assert report.duration_ms is not None and report.memory_size_mb == settings.function_memory_mb("ingest") == 512
    assert result.log_tail.startswith("START RequestId: ")


@pytest.mark.parametrize(
    ("client_id", "url", "message"),
    [
        ("lai_weekly_v1", "https://example.com/fake-item", "has URL https://example.com/fake-item"),
        ("lai_test_v1", "https://example.org/real", "contains 'test'"),
    ],
)
def test_the_sample_normalize_refuses_test_data_like_the_real_one(
    settings: Settings, embedded: str, client_id: str, url: str, message: str
) -> None:
    s3, lam = clients(settings, embedded)
    create_buckets(s3, [settings.config_bucket(), settings.data_bucket()], settings.region)
    upload_canonical(s3, settings.local_canonical_dir, settings.config_bucket())
    config = (REPO / "contexts" / "templates" / "lai_weekly.yaml").read_bytes()
    s3.put_object(Bucket=settings.config_bucket(), Key=f"clients/{client_id}.yaml", Body=config)
    item = {"item_id": "i1", "title": "t", "content": "c", "url": url, "published_at": "2026-11-20"}
    key = f"ingested/{client_id}/2026/11/26/items.json"
    s3.put_object(Bucket=settings.data_bucket(), Key=key, Body=json.dumps([item]).encode())
    result = aws.invoke(lam, settings.function_name("normalize-score"), {"client_id": client_id})
    assert result.payload["statusCode"] == 500
    assert result.payload["body"]["error"] == "ValueError" and message in result.payload["body"]["message"]


def test_function_configuration_names_the_handler_and_timeout(settings: Settings, embedded: str) -> None:
    _, lam = clients(settings, embedded)
    config = aws.function_configuration(lam, "vectora-inbox-newsletter-v2-local")
    assert config["Handler"] == "handler.lambda_handler"
    assert (config["Timeout"], config["MemorySize"]) == (900, 1024)  # the deployed values
    assert config["Environment"]["Variables"]["NEWSLETTERS_BUCKET"] == "vectora-inbox-newsletters-local"
    assert len(config["CodeSha256"]) == 44


def test_a_missing_function_is_an_environment_problem(settings: Settings, embedded: str) -> None:
    _, lam = clients(settings, embedded)
    with pytest.raises(EnvironmentProblem, match="function vectora-inbox-nope-v2-local not found"):
        aws.invoke(lam, "vectora-inbox-nope-v2-local", {"client_id": "x_v1"})


@pytest.fixture
def odd_handlers(tmp_path: Path) -> Path:
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "raiser.py").write_text(
        textwrap.dedent("""
        def lambda_handler(event, context):
            print("about to fail")
            raise ValueError("bad input for " + event["client_id"])
    """)
    )
    (folder / "envdump.py").write_text(
        textwrap.dedent("""
        import os
        def lambda_handler(event, context):
            remaining = context.get_remaining_time_in_millis()
            return {"statusCode": 200, "body": {"env": dict(os.environ), "remaining": remaining}}
    """)
    )
    return folder


def test_a_handler_that_raises_gives_function_error_unhandled(contexts_dir: Path, odd_handlers: Path) -> None:
    settings = settings_for(contexts_dir, LOCAL_HANDLER_INGEST=f"{odd_handlers}:raiser.lambda_handler")
    with EmbeddedAws(settings).running() as endpoint:
        _, lam = clients(settings, endpoint)
        result = aws.invoke(lam, settings.function_name("ingest"), {"client_id": "lai_weekly_v1"})
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "ValueError"
    assert result.payload["errorMessage"] == "bad input for lai_weekly_v1"
    assert "about to fail" in result.log_tail and "Traceback" in result.log_tail


def test_a_sleeping_handler_times_out_after_its_timeout(contexts_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "slow.py").write_text("import time\ndef lambda_handler(event, context):\n    time.sleep(60)\n")
    settings = settings_for(
        contexts_dir, LOCAL_HANDLER_INGEST=f"{folder}:slow.lambda_handler", LOCAL_LAMBDA_TIMEOUT="1"
    )
    with EmbeddedAws(settings).running() as endpoint:
        _, lam = clients(settings, endpoint)
        started = time.monotonic()
        result = aws.invoke(lam, settings.function_name("ingest"), {"client_id": "lai_weekly_v1"})
        elapsed = time.monotonic() - started
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in result.payload["errorMessage"]
    assert "Task timed out" in result.log_tail
    assert 1 <= elapsed < 10


def test_the_lambda_environment_is_built_from_scratch(
    contexts_dir: Path, odd_handlers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "someones-real-profile")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.example.invalid")
    settings = settings_for(contexts_dir, LOCAL_HANDLER_INGEST=f"{odd_handlers}:envdump.lambda_handler")
    with EmbeddedAws(settings).running() as endpoint:
        _, lam = clients(settings, endpoint)
        result = aws.invoke(lam, settings.function_name("ingest"), {"client_id": "lai_weekly_v1"})
    env = result.payload["body"]["env"]
    assert env["AWS_ENDPOINT_URL"] == endpoint
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "vectora-inbox-ingest-v2-local"
    assert (env["CONFIG_BUCKET"], env["ENV"], env["TZ"]) == ("vectora-inbox-config-local", "local", "UTC")
    assert "AWS_PROFILE" not in env and "AWS_ENDPOINT_URL_S3" not in env and "AWS_SESSION_TOKEN" not in env
    assert 0 < result.payload["body"]["remaining"] <= settings.function_timeout("ingest") * 1000


def test_stopping_frees_the_port(settings: Settings) -> None:
    server = EmbeddedAws(settings)
    port = int(server.start().rsplit(":", 1)[1])
    server.stop()
    again = EmbeddedAws(settings, port=port)  # as `make local-aws PORT=...` run again right away
    try:
        assert again.start() == f"http://127.0.0.1:{port}"
    finally:
        again.stop()


def test_a_port_already_taken_is_a_clear_environment_problem(settings: Settings) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(EnvironmentProblem, match=r"cannot listen on 127\.0\.0\.1:\d+"):
            EmbeddedAws(settings, port=holder.getsockname()[1]).start()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 0), (signal.SIGTERM, 143)])
def test_local_aws_stops_on_ctrl_c_and_says_when_it_was_terminated(signum: signal.Signals, code: int) -> None:
    with local_aws_server(REPO, signum, code) as flows:
        assert flows["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
