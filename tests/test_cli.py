"""The command line as a person uses it: `python -m tasks ...` in a child process, exit codes and messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, safe_environ


def tasks(contexts_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tasks", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=safe_environ(CONTEXTS_DIR=str(contexts_dir)),
        timeout=120,
    )


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
