"""The command line as a person uses it: `python -m tasks ...` in a child process, exit codes and messages."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_tasks, safe_environ, start_and_wait_for_handler


def tasks(contexts_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_tasks(safe_environ(CONTEXTS_DIR=str(contexts_dir)), *args)


def test_help_lists_the_task_commands(contexts_dir: Path) -> None:
    result = tasks(contexts_dir, "--help")
    assert result.returncode == 0
    for command in ("context", "local-e2e"):
        assert command in result.stdout


def test_context_new_prints_the_client_id_and_list_shows_it(contexts_dir: Path) -> None:
    created = tasks(contexts_dir, "context", "new", "--purpose", "line one\nline two")
    assert (created.returncode, created.stdout) == (0, "lai_weekly_v1\n")
    listed = tasks(contexts_dir, "context", "list")
    assert "lai_weekly_v1" in listed.stdout and "new" in listed.stdout and "line one line two" in listed.stdout
    shown = tasks(contexts_dir, "context", "show", "lai_weekly_v1")
    assert '"purpose": "line one\\nline two"' in shown.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["local-e2e", "--client-id", "../etc"], 2, "malformed client_id '../etc'"),
        (["local-e2e", "--client-id", "LAI_WEEKLY_V1"], 2, "malformed client_id"),
        (["local-e2e", "--client-id", ""], 2, "client_id is empty"),
        (["local-e2e", "--client-id", "lai_weekly_v7"], 2, "no context lai_weekly_v7"),
        (["context", "new", "--template", "nope"], 2, "unknown template 'nope'"),
        (["context", "show", "lai weekly"], 2, "malformed client_id"),
        (["context", "frobnicate"], 2, "invalid choice"),
    ],
)
def test_bad_input_is_one_clear_line_and_an_exit_code(
    contexts_dir: Path, args: list[str], code: int, message: str
) -> None:
    result = tasks(contexts_dir, *args)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == f"exit {code}: usage or bad input"
    assert not any(p.name != "templates" for p in contexts_dir.iterdir())


def test_debug_shows_the_traceback(contexts_dir: Path) -> None:
    result = tasks(contexts_dir, "--debug", "context", "new", "--template", "nope")
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_ctrl_c_mid_step_records_interrupted_exits_130_and_leaves_no_process(
    contexts_dir: Path, slow_handler: Path
) -> None:
    env = safe_environ(
        CONTEXTS_DIR=str(contexts_dir), LOCAL_HANDLER_NORMALIZE_SCORE=f"{slow_handler}:handler.lambda_handler"
    )
    child, handler_pid = start_and_wait_for_handler(env, slow_handler, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 130, stdout + stderr
    assert "may still complete" in stderr
    assert stderr.rstrip().splitlines()[-1] == "exit 130: interrupted"
    runs = list((contexts_dir / "lai_weekly_v1" / "runs").iterdir())
    run = json.loads((runs[0] / "run.json").read_text())
    assert run["status"] == "interrupted" and run["steps"][-1]["status"] == "interrupted"
    assert json.loads((contexts_dir / "lai_weekly_v1" / "context.json").read_text())["status"] == "interrupted"
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(handler_pid, 0)
    with socket.socket() as probe:  # no listener left on the embedded AWS's port (TIME_WAIT connections may linger)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", int(run["endpoint"].rsplit(":", 1)[1])))
        probe.listen()


def test_kill_9_mid_step_leaves_the_context_usable_and_the_run_unfinished(
    contexts_dir: Path, slow_handler: Path
) -> None:
    env = safe_environ(CONTEXTS_DIR=str(contexts_dir), LOCAL_HANDLER_INGEST=f"{slow_handler}:handler.lambda_handler")
    child, handler_pid = start_and_wait_for_handler(
        env, slow_handler, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    child.kill()
    child.wait()
    for path in contexts_dir.rglob("*.json"):
        json.loads(path.read_text())
    assert "unfinished" in tasks(contexts_dir, "context", "list").stdout
    rerun = tasks(contexts_dir, "local-e2e", "--client-id", "lai_weekly_v1")
    assert rerun.returncode == 0, rerun.stderr
    assert "passed" in tasks(contexts_dir, "context", "list").stdout
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(handler_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the handler outlived the killed runtime")


def test_aws_e2e_dry_run_prints_the_plan_and_needs_no_credentials(contexts_dir: Path) -> None:
    assert tasks(contexts_dir, "context", "new").returncode == 0
    env = {k: v for k, v in safe_environ(CONTEXTS_DIR=str(contexts_dir)).items() if not k.startswith("AWS_ACCESS")}
    result = run_tasks(
        env | {"AWS_PROFILE": "no-such-profile"},
        *("aws-e2e", "--client-id", "lai_weekly_v1", "--env", "stage", "--dry-run", "--payload", '{"period_days": 7}'),
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert plan["functions"]["newsletter"] == "vectora-inbox-newsletter-v2-stage"
    assert plan["event"] == {"client_id": "lai_weekly_v1", "period_days": 7}
    assert "nothing invoked" in result.stdout
