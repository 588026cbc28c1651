"""The local Lambda service through boto3 on 127.0.0.1: AWS's runtime client, isolation, warm environments, limits,
per-function settings and the Invoke API's answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tasks.aws import clients as aws
from tasks.errors import ConfigError
from tasks.local.execution_env import FLUSH_WAIT_S, ExecutionEnvironment, FunctionSpec
from tasks.local.forkserver import ZYGOTE, ForkedProcess
from tasks.local.server import EmbeddedAws
from tasks.pipeline.report_line import decode_log_tail, parse_report
from tasks.settings import Settings
from tests.conftest import settings_for

INGEST = "vectora-inbox-ingest-v2-local"

HANDLERS = {
    "counter.py": """
        import os
        calls = 0
        def lambda_handler(event, context):
            global calls
            calls += 1
            return {"calls": calls, "pid": os.getpid(), "request_id": context.aws_request_id}
    """,
    "envdump.py": """
        import os
        def lambda_handler(event, context):
            return {"env": dict(os.environ), "cwd": os.getcwd()}
    """,
    "needs_requests.py": """
        import requests
        def lambda_handler(event, context):
            return {}
    """,
    "needs_moto.py": """
        import moto
        def lambda_handler(event, context):
            return {}
    """,
    "needs_yaml.py": """
        import yaml
        def lambda_handler(event, context):
            return {"yaml": yaml.__version__}
    """,
    "broken_syntax.py": """
        def lambda_handler(event, context)
            return {}
    """,
    "waiter.py": """
        import os, pathlib, time
        def lambda_handler(event, context):
            folder = pathlib.Path(event["folder"])
            (folder / f"running-{os.getpid()}").touch()
            while not (folder / "release").exists():
                time.sleep(0.01)
            return {"done": True}
    """,
    "session.py": """
        import boto3
        def lambda_handler(event, context):
            return {"warmed": boto3.DEFAULT_SESSION is not None}
    """,
    "hog.py": """
        def lambda_handler(event, context):
            blocks = [bytearray(1024 * 1024) for _ in range(event["mb"])]
            return {"held": len(blocks)}
    """,
    "logger.py": """
        import logging
        def lambda_handler(event, context):
            logging.getLogger().warning("a warning from the handler")
            print("a print")
            return {}
    """,
    "async_target.py": """
        import json, os, pathlib
        def lambda_handler(event, context):
            marker = pathlib.Path(event["marker"])
            with marker.open("a") as handle:
                handle.write(context.aws_request_id + "\\n")
            if event.get("fail"):
                raise RuntimeError("asked to fail")
            return {}
    """,
    "big_answer.py": """
        def lambda_handler(event, context):
            return {"blob": "x" * (7 * 1024 * 1024)}
    """,
}


@pytest.fixture(scope="module")
def handlers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("handlers")
    for name, code in HANDLERS.items():
        (folder / name).write_text(textwrap.dedent(code))
    return folder


class Local:
    """An embedded AWS whose ingest function runs a chosen handler; its Lambda client never retries."""

    def __init__(self, settings: Settings, server: EmbeddedAws, endpoint: str) -> None:
        self.settings = settings
        self.server = server
        self.endpoint = endpoint
        factory = aws.ClientFactory.local(settings.region, endpoint)
        self.client = factory.lambda_(read_timeout=60)

    def invoke(self, event: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        answer = self.client.invoke(FunctionName=INGEST, Payload=json.dumps(event or {}), LogType="Tail", **kwargs)
        answer["Body"] = answer["Payload"].read()
        answer["Log"] = decode_log_tail(answer.get("LogResult"))
        return answer

    def payload(self, event: dict[str, Any] | None = None) -> Any:
        return json.loads(self.invoke(event)["Body"])


@pytest.fixture
def local(contexts_dir: Path, handlers: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory: local(handler_module, **settings) -> a running Local (stopped at the end of the test)."""
    servers: list[EmbeddedAws] = []

    def start(module: str, **variables: str) -> Local:
        variables = {"LOCAL_HANDLER_INGEST": f"{handlers}:{module}.lambda_handler", **variables}
        settings = settings_for(contexts_dir, **variables)
        server = EmbeddedAws(settings)
        servers.append(server)
        return Local(settings, server, server.start())

    yield start
    for server in servers:
        server.stop()


def test_warm_invokes_reuse_one_environment_and_report_init_once(local: Any) -> None:
    runtime = local("counter")
    first, second = runtime.invoke(), runtime.invoke()
    bodies = [json.loads(a["Body"]) for a in (first, second)]
    assert [b["calls"] for b in bodies] == [1, 2]  # module globals persist
    assert bodies[0]["pid"] == bodies[1]["pid"] and bodies[0]["request_id"] != bodies[1]["request_id"]
    assert parse_report(first["Log"]).init_duration_ms is not None
    assert parse_report(second["Log"]).init_duration_ms is None


def test_concurrent_invokes_get_more_environments_up_to_the_reserved_concurrency(local: Any, tmp_path: Path) -> None:
    runtime = local("waiter", LOCAL_LAMBDA_CONCURRENCY="2")
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(runtime.payload({"folder": str(tmp_path)}))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("running-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(list(tmp_path.glob("running-*"))) == 2  # two environments, each holding an invocation
    assert error_code(lambda: runtime.payload({"folder": str(tmp_path)})) == "TooManyRequestsException"
    (tmp_path / "release").touch()
    for thread in threads:
        thread.join()
    assert results == [{"done": True}] * 2
    function = runtime.server.runtime.find(INGEST)
    assert runtime.server.runtime.environments(function) == 2


def test_idle_environments_are_reaped(local: Any) -> None:
    runtime = local("counter", LOCAL_LAMBDA_IDLE_SECONDS="0.2")
    runtime.invoke()
    function = runtime.server.runtime.find(INGEST)
    deadline = time.monotonic() + 5
    while runtime.server.runtime.environments(function) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.server.runtime.environments(function) == 0
    assert json.loads(runtime.invoke()["Body"])["calls"] == 1  # a new cold environment


@pytest.mark.parametrize(
    ("module", "error_type", "message"),
    [
        ("needs_requests", "Runtime.ImportModuleError", "Unable to import module 'needs_requests': No module named"),
        ("needs_moto", "Runtime.ImportModuleError", "No module named 'moto'"),  # the toolkit's own packages
        ("broken_syntax", "Runtime.UserCodeSyntaxError", "Syntax error in module 'broken_syntax'"),
    ],
)
def test_a_function_sees_only_the_lambda_runtime_and_its_own_dependencies(
    local: Any, module: str, error_type: str, message: str
) -> None:
    answer = local(module).invoke()
    assert answer["FunctionError"] == "Unhandled"
    payload = json.loads(answer["Body"])
    assert payload["errorType"] == error_type and message in payload["errorMessage"]


def test_a_dependency_comes_from_a_requirements_file_not_from_the_toolkit(local: Any, handlers: Path) -> None:
    without = local("needs_yaml", LOCAL_LAMBDA_LAYERS="")
    assert json.loads(without.invoke()["Body"])["errorType"] == "Runtime.ImportModuleError"
    layer = handlers.parent / "yaml-layer"
    layer.mkdir(exist_ok=True)
    (layer / "requirements.txt").write_text("PyYAML>=6.0\n")
    with_layer = local("needs_yaml", LOCAL_LAMBDA_LAYERS=str(layer))
    assert "yaml" in with_layer.payload()


def test_the_environment_is_lambdas_with_the_functions_own_variables(local: Any, tmp_path: Path) -> None:
    env_vars = tmp_path / "env.json"
    env_vars.write_text(
        json.dumps(
            {
                "Parameters": {"BEDROCK_REGION": "us-east-1", "LOG_LEVEL": "INFO"},
                "ingest": {"PROJECT_NAME": "vectora"},
                INGEST: {"LOG_LEVEL": "DEBUG"},
                "newsletter": {"ONLY_NEWSLETTER": "1"},
            }
        )
    )
    runtime = local("envdump", LOCAL_ENV_VARS=str(env_vars))
    body = runtime.payload()
    env = body["env"]
    assert (env["BEDROCK_REGION"], env["PROJECT_NAME"], env["LOG_LEVEL"]) == ("us-east-1", "vectora", "DEBUG")
    assert "ONLY_NEWSLETTER" not in env
    assert env["_HANDLER"] == "envdump.lambda_handler" and env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert body["cwd"] == env["LAMBDA_TASK_ROOT"]
    config = runtime.client.get_function_configuration(FunctionName=INGEST)
    assert config["Environment"]["Variables"]["PROJECT_NAME"] == "vectora"


def test_a_bad_env_vars_file_is_named(local: Any, tmp_path: Path) -> None:
    env_vars = tmp_path / "env.json"
    env_vars.write_text('{"Parameters": ["not", "a", "mapping"]}')
    with pytest.raises(ConfigError, match=str(env_vars)):
        local("envdump", LOCAL_ENV_VARS=str(env_vars))


def test_max_memory_used_is_the_functions_own_and_going_over_is_out_of_memory(local: Any) -> None:
    runtime = local("hog", LOCAL_LAMBDA_MEMORY="128")
    small = runtime.invoke({"mb": 10})
    used = parse_report(small["Log"]).max_memory_used_mb
    assert used is not None and 10 < used < 128
    big = runtime.invoke({"mb": 300})
    assert big["FunctionError"] == "Unhandled"
    assert json.loads(big["Body"])["errorType"] == "Runtime.OutOfMemory"
    assert parse_report(big["Log"]).memory_size_mb == 128


def test_the_runtime_clients_own_logging_format(local: Any) -> None:
    answer = local("logger").invoke()
    line = next(x for x in answer["Log"].splitlines() if "a warning from the handler" in x)
    level, stamp, request_id, _ = line.split("\t")
    assert level == "[WARNING]" and stamp.endswith("Z") and request_id == answer["ResponseMetadata"]["RequestId"]
    assert "a print" in answer["Log"]


def test_an_event_invocation_is_accepted_then_runs_and_is_retried_twice_on_error(local: Any, tmp_path: Path) -> None:
    runtime = local("async_target", LOCAL_EVENT_RETRY_DELAY="0.05")
    ok, failing = tmp_path / "ok", tmp_path / "failing"
    accepted = runtime.invoke({"marker": str(ok)}, InvocationType="Event")
    assert accepted["StatusCode"] == 202 and accepted["Body"] == b""
    runtime.invoke({"marker": str(failing), "fail": True}, InvocationType="Event")

    def runs(marker: Path) -> int:
        return len(marker.read_text().split()) if marker.exists() else 0

    deadline = time.monotonic() + 10
    while (runs(ok) < 1 or runs(failing) < 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # no fourth attempt follows
    assert (runs(ok), runs(failing)) == (1, 3)


def test_a_dry_run_runs_nothing(local: Any, tmp_path: Path) -> None:
    runtime = local("async_target")
    answer = runtime.invoke({"marker": str(tmp_path / "never")}, InvocationType="DryRun")
    assert answer["StatusCode"] == 204
    time.sleep(0.3)
    assert not (tmp_path / "never").exists()


def error_code(call: Any) -> str:
    """The error code of what call raised; like Lambda's, every error answer carries a request id."""
    with pytest.raises(ClientError) as raised:
        call()
    assert raised.value.response["ResponseMetadata"].get("RequestId")  # moto's Step Functions executor reads it
    return raised.value.response["Error"]["Code"]


def test_bad_requests_are_refused_like_lambda(local: Any) -> None:
    runtime = local("counter")
    client = runtime.client
    assert error_code(lambda: client.invoke(FunctionName=INGEST, Payload=b"{not json")) == (
        "InvalidRequestContentException"
    )
    huge = json.dumps({"blob": "x" * (6 * 1024 * 1024)})
    assert error_code(lambda: client.invoke(FunctionName=INGEST, Payload=huge)) == "RequestTooLargeException"
    for name, qualifier in ((INGEST, "7"), (INGEST, "live"), ("vectora-inbox-ingest-v2-dve", None)):
        extra = {"Qualifier": qualifier} if qualifier else {}
        code = error_code(lambda n=name, e=extra: client.invoke(FunctionName=n, Payload=b"{}", **e))
        assert code == "ResourceNotFoundException"
    assert json.loads(client.invoke(FunctionName=INGEST, Payload=b"{}", Qualifier="$LATEST")["Payload"].read())


def test_a_response_over_6_mb_is_a_function_error(local: Any) -> None:
    answer = local("big_answer").invoke()
    assert answer["FunctionError"] == "Unhandled"
    assert json.loads(answer["Body"])["errorType"] == "Function.ResponseSizeTooLarge"


def test_only_the_served_envs_functions_exist_and_are_listed(contexts_dir: Path) -> None:
    settings = settings_for(contexts_dir)
    with EmbeddedAws(settings, envs=("local", "dev")).running() as endpoint:
        client = aws.ClientFactory.local(settings.region, endpoint).lambda_(read_timeout=10)
        names = sorted(f["FunctionName"] for f in client.list_functions()["Functions"])
        assert len(names) == 6 and "vectora-inbox-newsletter-v2-dev" in names
        assert error_code(lambda: client.get_function(FunctionName="vectora-inbox-ingest-v2-stage")) == (
            "ResourceNotFoundException"
        )


def test_a_local_run_prewarms_and_reports_each_functions_own_memory(contexts_dir: Path) -> None:
    from tasks.contexts.store import ContextStore
    from tasks.flows.local_e2e import LocalE2E

    store = ContextStore(contexts_dir)
    flow = LocalE2E(settings_for(contexts_dir), store)
    record = flow.run(flow.context(None, "lai_weekly", "memory"))
    assert record.status == "passed", record.error
    sizes = [s.memory_size_mb for s in record.steps]
    assert sizes == [512, 1024, 1024]  # the deployed memory sizes
    used = [s.max_memory_used_mb for s in record.steps]
    assert all(u is not None and 20 < u < 200 for u in used)
    assert all(s.init_duration_ms is not None for s in record.steps)  # each function's first (cold) invoke


def test_a_killed_zygote_is_replaced_and_the_function_still_answers(local: Any) -> None:
    """The process environments are forked from may die (the OOM killer): the next cold start starts another."""
    runtime = local("counter")
    first = runtime.payload()
    zygote = int(Path(f"/proc/{first['pid']}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(zygote, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{first['pid']}").exists() and time.monotonic() < deadline:  # its sandboxes follow it
        time.sleep(0.02)
    again = runtime.payload()
    assert again["calls"] == 1 and again["pid"] != first["pid"]  # a new cold environment, from a new zygote


def test_an_answer_is_returned_at_once_when_the_clients_next_poll_came_first(tmp_path: Path) -> None:
    """The runtime client asks for the next event right after answering. When that request arrives before the runtime
    looks at the answer, the runtime must count it, not wait FLUSH_WAIT_S for yet another one (it used to, at random:
    up to half a second lost per step). The test plays the client on the environment's own Runtime API methods."""
    spec = FunctionSpec("f", "arn:aws:lambda:eu-west-3:0:function:f", "h.f", tmp_path, Path(sys.executable), {}, 5, 128)
    environment = ExecutionEnvironment(spec, zygote=None)  # type: ignore[arg-type]  # never started: no process
    environment._process = ForkedProcess(os.getpid())  # alive, with a /proc entry for the memory reading

    def client() -> None:
        first = environment._next()
        assert first is not None
        with environment._state:  # the answer and the next poll, both before the runtime can look
            environment._finish(first.request_id, b'{"ok": true}', None)
            environment._next()  # counts the poll, then waits (lock released) for an event that never comes

    playing = threading.Thread(target=client, daemon=True)
    playing.start()
    started = time.monotonic()
    try:
        outcome = environment.invoke("request-1", b"{}")
        elapsed = time.monotonic() - started
    finally:
        environment._process.ended(0)  # the pretend process ends: the client's last poll gets no event
        with environment._state:
            environment._state.notify_all()
        playing.join(timeout=5)
        environment._server.stop()
        environment._resources.close()
    assert outcome.payload == b'{"ok": true}' and outcome.error_type is None
    assert elapsed < FLUSH_WAIT_S / 2, f"waited {elapsed:.2f} s for a poll that had already come"


def test_the_zygotes_warmed_session_carries_none_of_its_users_aws_files(tmp_path: Path) -> None:
    """The zygote parses service models before it forks sandboxes; it must not read its user's ~/.aws files into the
    session the sandboxes inherit: a sandbox's client is configured from the sandbox's own variables only."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "config").write_text("[default]\ns3 =\n    addressing_style = virtual\nretry_mode = adaptive\n")
    code = (
        f"import json, os, runpy; runpy.run_path({str(ZYGOTE)!r})['_preload']()\n"
        "import boto3; assert boto3.DEFAULT_SESSION is not None\n"
        "os.environ.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_ACCESS_KEY_ID='x',"
        " AWS_SECRET_ACCESS_KEY='x', AWS_DEFAULT_REGION='eu-west-3')\n"
        "client = boto3.client('s3', endpoint_url='http://127.0.0.1:9')\n"
        "print(json.dumps([client.meta.config.s3, client.meta.config.retries['mode']]))\n"
    )
    environ = {"HOME": str(home), "PATH": os.environ["PATH"]}
    result = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == [None, "standard"]


def test_a_function_with_its_own_models_path_does_not_get_the_warmed_session(local: Any, tmp_path: Path) -> None:
    """Sandboxes inherit a boto3 session whose loader has parsed the S3 and Bedrock models; one whose variables set
    AWS_DATA_PATH (models of its own) starts without it, so boto3 searches its path as on Lambda."""
    assert local("session").payload() == {"warmed": True}
    env_vars = tmp_path / "env.json"
    env_vars.write_text(json.dumps({"ingest": {"AWS_DATA_PATH": str(tmp_path / "models")}}))
    assert local("session", LOCAL_ENV_VARS=str(env_vars)).payload() == {"warmed": False}
