"""Nox sessions: thin wrappers over `python -m tasks` and the test tools. All logic lives in tasks/.

Every session runs in the one environment Make builds (.venv, from pyproject.toml), so nothing is installed twice
and a warm session costs only nox's start-up. A task's exit code passes through unchanged (README, "Exit codes").
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import nox

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "none"
nox.options.error_on_external_run = False

ROOT = Path(__file__).resolve().parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def _python(session: nox.Session) -> str:
    if not VENV_PYTHON.exists():
        session.error("no .venv here: run `make venv` first (it builds the environment from pyproject.toml)")
    return str(VENV_PYTHON)


def _call(session: nox.Session, *args: str) -> None:
    """Run a command in the toolkit's environment; exit nox with its code if it fails.

    On Ctrl-C the command gets the signal too, and SIGTERM is passed on to it: wait for it to record the
    interruption, then pass its code on. A command ended by signal N ends nox with 128 + N, as a shell would.
    """
    command = [_python(session), *args]
    session.log(" ".join(command))
    child = subprocess.Popen(command, cwd=ROOT)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
    try:
        code = _wait(child)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code < 0:
        code = 128 - code
        print(f"exit {code}: ended by {signal.Signals(code - 128).name}", file=sys.stderr, flush=True)
    if code:
        raise SystemExit(code)


def _wait(child: subprocess.Popen[bytes]) -> int:
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue


def _task(session: nox.Session, *args: str) -> None:
    _call(session, "-m", "tasks", *args, *session.posargs)


@nox.session(default=False)
def local_e2e(session: nox.Session) -> None:
    """Create a context (or rerun --client-id) and run the whole workflow on the embedded AWS."""
    _task(session, "local-e2e")


@nox.session(default=False)
def e2e(session: nox.Session) -> None:
    """Invoke an env's three Lambdas in order for a context: `-- --env stage [--client-id ...]`."""
    _task(session, "aws-e2e")


@nox.session(default=False)
def promote(session: nox.Session) -> None:
    """Upload a context's config to an env and record the promotion: `-- --env dev [--client-id ...]`."""
    _task(session, "promote")


@nox.session(default=False)
def upload_config(session: nox.Session) -> None:
    """Upload a context's config to an env's config bucket: `-- --client-id ... --env dev [--dry-run]`."""
    _task(session, "upload-config")


@nox.session(default=False)
def pull(session: nox.Session) -> None:
    """Make a context of a client found in an env's S3 (promoted elsewhere): `-- --client-id ... --env dev`."""
    _task(session, "pull")


@nox.session(default=False)
def rollback(session: nox.Session) -> None:
    """Restore what a context's last upload to an env replaced: `-- --client-id ... --env dev`."""
    _task(session, "rollback")


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Summarize contexts, re-render a run's reports (`-- --client-id ...`), or `-- compare A B ...`."""
    _task(session, "report")


@nox.session(default=False)
def local_aws(session: nox.Session) -> None:
    """Serve the embedded AWS (S3 + Lambda) on 127.0.0.1 until Ctrl-C."""
    _task(session, "local-aws")


@nox.session(default=False)
def context(session: nox.Session) -> None:
    """Manage test contexts: `-- new|list|show ...`."""
    _task(session, "context")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite on every core (pass pytest options after --, e.g. `-m unit` or `-n 0`)."""
    _call(session, "-m", "pytest", "-n", "auto", "--dist", "loadfile", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Measure the toolkit's overhead against floors measured side by side (`-- --runs 5 --only 1,4`)."""
    _call(session, "-m", "benchmarks.bench", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Run ruff: lint rules and formatting."""
    _call(session, "-m", "ruff", "check", ".", *session.posargs)
    _call(session, "-m", "ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Run mypy on tasks/, the noxfile and the benchmarks, with the boto3 stubs of the services used."""
    _call(session, "-m", "mypy", *session.posargs)


@nox.session(default=False, venv_backend="uv", reuse_venv=True)
def minimums(session: nox.Session) -> None:
    """Install the lowest versions pyproject.toml allows (uv --resolution lowest-direct) and run the tests."""
    session.install("--resolution", "lowest-direct", "-r", "pyproject.toml", "--group", "dev")
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs, env={"UV_COMPILE_BYTECODE": "1"})
