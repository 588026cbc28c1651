"""make, nox and python as a user meets them: session names, failures that do not stop nox, hints in each one's
syntax, the confirmation of `make context`, and the first contact on a fresh machine."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, make, safe_environ

NOX = (sys.executable, "-m", "nox", "--non-interactive", "-f", str(REPO / "noxfile.py"))


def nox(contexts_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`nox ARGS` as a user types it, with contexts in contexts_dir."""
    env = safe_environ(CONTEXTS_DIR=str(contexts_dir))
    return subprocess.run([*NOX, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_nox_sessions_carry_the_make_targets_names(contexts_dir: Path) -> None:
    listed = nox(contexts_dir, "-l").stdout
    sessions = {line.split()[1] for line in listed.splitlines() if line[:2] in ("* ", "- ")}
    make_targets = {"local-e2e", "aws-e2e", "promote", "upload-config", "rollback", "report", "compare", "local-aws"}
    assert make_targets | {"new-context", "contexts", "e2e", "tests", "lint", "typecheck", "bench"} <= sessions


def test_a_failing_session_does_not_stop_nox_and_its_code_comes_through(contexts_dir: Path) -> None:
    result = nox(contexts_dir, "-s", "upload-config", "contexts")  # the first fails (no --client-id), the second runs
    assert result.returncode == 2, result.stderr
    assert "Session upload-config aborted" in result.stderr and "* contexts: success" in result.stderr
    assert "no contexts yet" in result.stdout
    assert result.stderr.splitlines()[-1] == "exit 2: usage or bad input"
    assert result.stderr.count("exit 2: usage or bad input") == 1  # nox prints it once, last; the task did not


def test_a_single_session_exits_with_the_tasks_code(contexts_dir: Path) -> None:
    result = nox(contexts_dir, "-s", "local-e2e", "--", "--client-id", "lai_weekly_v9")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == "exit 2: usage or bad input"


@pytest.mark.parametrize(
    ("interface", "hint"),
    [
        ("nox", "`nox -s contexts` lists them, `nox -s new-context` creates one"),
        ("python", "`python -m tasks context list` lists them, `python -m tasks context new` creates one"),
    ],
)
def test_hints_use_the_syntax_of_the_interface_that_started_the_task(
    contexts_dir: Path, interface: str, hint: str
) -> None:
    args = ("local-e2e", "--client-id", "lai_weekly_v9")
    if interface == "nox":
        result = nox(contexts_dir, "-s", *args[:1], "--", *args[1:])
    else:
        env = safe_environ(CONTEXTS_DIR=str(contexts_dir))
        result = subprocess.run(
            [sys.executable, "-m", "tasks", *args], cwd=REPO, env=env, capture_output=True, text=True
        )
    assert hint in result.stderr, result.stderr
    assert "make " not in result.stderr


def test_make_hints_use_make_syntax_and_the_new_target(clone: Path) -> None:
    result = make(clone, "local-e2e", "CLIENT_ID=lai_weekly_v99")
    assert "`make contexts` lists them, `make new-context` creates one" in result.stderr, result.stderr
    *_, exit_line, make_line = result.stderr.splitlines()
    assert exit_line == "exit 2: usage or bad input" and make_line.startswith("make: ***")
    assert result.stderr.count("exit 2:") == 1


def test_make_new_context_creates_and_make_context_refuses_without_a_terminal(clone: Path) -> None:
    before = set((clone / "contexts").iterdir())
    refused = make(clone, "context")  # stdin is not a terminal
    assert refused.returncode != 0
    assert "run make new-context" in refused.stderr and "exit 2: usage or bad input" in refused.stderr
    assert set((clone / "contexts").iterdir()) == before
    created = make(clone, "new-context", "PURPOSE=alone")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1].startswith("lai_weekly_v")


def _make_on_a_terminal(clone: Path, answer: bytes) -> str:
    """`make context` with a pseudo-terminal as stdin, answering the prompt; returns what the terminal showed."""
    main, child_end = pty.openpty()
    env = {k: v for k, v in safe_environ().items() if k not in ("MAKEFLAGS", "MAKELEVEL", "VECTORA_DOTENV")}
    child = subprocess.Popen(
        ["make", "--no-print-directory", "context"],
        cwd=clone,
        env=env,
        stdin=child_end,
        stdout=child_end,
        stderr=child_end,
    )
    os.close(child_end)
    shown = b""
    while b"[y/N]" not in shown:
        shown += os.read(main, 4096)
    os.write(main, answer + b"\n")
    child.wait(timeout=120)
    try:
        while chunk := os.read(main, 4096):
            shown += chunk
    except OSError:  # the terminal closed with the child
        pass
    os.close(main)
    return shown.decode()


def test_make_context_on_a_terminal_asks_first(clone: Path) -> None:
    before = len(list((clone / "contexts").iterdir()))
    declined = _make_on_a_terminal(clone, b"n")
    assert "uses up a client_id" in declined and "nothing created" in declined
    assert len(list((clone / "contexts").iterdir())) == before
    accepted = _make_on_a_terminal(clone, b"y")
    assert "lai_weekly_v" in accepted.split("[y/N]")[1]
    assert len(list((clone / "contexts").iterdir())) == before + 1


def test_python_m_tasks_outside_the_venv_says_how_to_reach_it_in_one_line() -> None:
    # -S: no site-packages, as with a system python3 that lacks the toolkit's packages
    result = subprocess.run(
        [sys.executable, "-S", "-m", "tasks", "--help"], cwd=REPO, env=safe_environ(), capture_output=True, text=True
    )
    assert result.returncode == 3
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert "run `make venv`, then use `.venv/bin/python -m tasks`" in result.stderr


def test_the_readmes_first_commands_work_as_printed() -> None:
    readme = (REPO / "README.md").read_text()
    for command in (".venv/bin/nox -l", ".venv/bin/python -m tasks --help"):
        assert f"`{command}`" in readme
        result = subprocess.run(command.split(), cwd=REPO, env=safe_environ(), capture_output=True, text=True)
        assert result.returncode == 0 and "local-e2e" in result.stdout, result.stderr


def test_make_detects_a_half_built_venv_and_says_what_to_install_and_delete(tmp_path: Path) -> None:
    for name in ("Makefile", "pyproject.toml", "uv.lock"):
        (tmp_path / name).write_bytes((REPO / name).read_bytes())
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')  # no site-packages: no pip, as on Debian
    python.chmod(0o755)
    result = make(tmp_path, "venv", f"PYTHON={sys.executable}")
    assert result.returncode != 0
    assert "`sudo apt install python3-venv`, then `rm -rf .venv`" in result.stderr, result.stderr
    assert "exit 3: environment, credentials or busy" in result.stderr and "No module named pip" not in result.stderr
