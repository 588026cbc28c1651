"""Nox sessions: thin wrappers over the tasks (`python -m tasks`) and the test tools. All logic lives in tasks/.

Session names are the make targets' (`nox -s aws-e2e`, `nox -s local-e2e`, ...; `nox -s e2e` is kept as an alias).
Every session runs in the one environment Make builds (.venv, from pyproject.toml), so nothing is installed twice;
a task runs in nox's own process (tasks.entry.run) when nox runs in .venv, so a warm session costs only nox's
start-up. A failing session does not stop the others (`nox -s tests lint` runs both and prints nox's summary); nox
then ends with the worst task exit code, after a last line `exit N: meaning` (README, "Exit codes"), so
`nox -s local-e2e` exits with the task's own code.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # tasks.errors, tasks.flows.parallel, tasks.visible: exit codes, their order (stdlib)

from tasks.errors import EXIT_MEANINGS  # noqa: E402
from tasks.flows.parallel import worst  # noqa: E402
from tasks.interface import VARIABLE as INTERFACE  # noqa: E402
from tasks.visible import visible  # noqa: E402

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "none"
nox.options.error_on_external_run = False

VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
FREE_TEXT = ("--purpose", "--payload")  # what a person types freely (it may hold a secret): never echoed
_failed: list[int] = []  # the exit codes of the commands that failed in this nox run


def _python(session: nox.Session) -> str:
    if not VENV_PYTHON.exists():
        session.error("no .venv here: run `make venv` first (it builds the environment from pyproject.toml)")
    return str(VENV_PYTHON)


def _interface() -> str:
    """Whose syntax the task's hints use: make's when make started nox, else nox's."""
    return "make" if os.environ.get(INTERFACE) == "make" else "nox"


def _meaning(code: int) -> str:
    if code in EXIT_MEANINGS or code <= 128:
        return EXIT_MEANINGS.get(code, "failed")
    return f"ended by {signal.Signals(code - 128).name}"


@atexit.register
def _exit_with_the_task_code() -> None:
    """nox ends with 1 when a session failed: end with the worst command's own code instead, after its exit line."""
    if _failed:
        code = worst(_failed)
        print(f"exit {code}: {_meaning(code)}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(code)


def _echo(args: list[str]) -> str:
    """The command line nox echoes: the values of FREE_TEXT options left out (`--purpose=...`), control characters
    shown as escapes."""
    shown: list[str] = []
    for arg in args:
        name, equals, _ = arg.partition("=")
        if shown and shown[-1] in FREE_TEXT:
            arg = "..."
        elif name in FREE_TEXT and equals:
            arg = f"{name}=..."
        shown.append(arg)
    return visible(shlex.join(shown))


def _call(session: nox.Session, *args: str) -> None:
    """Run a command in the toolkit's environment; a failure fails the session (nox goes on to the next one).

    On Ctrl-C the command gets the signal too, and SIGTERM is passed on to it: wait for it to record the
    interruption, then end nox at once with its code. A command ended by signal N counts as 128 + N, as in a shell.
    """
    command = [_python(session), *args]
    session.log(_echo(command))
    child = subprocess.Popen(command, cwd=ROOT, env=os.environ | {INTERFACE: _interface()})
    interrupted: list[int] = []  # 128 + the signal, for each Ctrl-C or SIGTERM that arrived while it ran

    def forward(signum: int, frame: object) -> None:
        interrupted.append(128 + signum)
        child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        code = _wait(child, interrupted)
    finally:
        signal.signal(signal.SIGTERM, previous)
    code = 128 - code if code < 0 else code
    if interrupted and code <= 128:  # the command handled the signal its own way (pytest exits 2): it was stopped
        code = interrupted[0]
    if code:
        _fail(session, code)


def _fail(session: nox.Session, code: int) -> None:
    _failed.append(code)
    if code > 128:  # interrupted, terminated or killed: stop here, as a shell would
        raise SystemExit(code)
    session.error(f"exit {code}")


def _wait(child: subprocess.Popen[bytes], interrupted: list[int]) -> int:
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # the child got Ctrl-C too: wait for it to record the interruption
            interrupted.append(128 + signal.SIGINT)


def _task(session: nox.Session, *args: str) -> None:
    """Run `python -m tasks ARGS POSARGS`: in this process when nox runs in the toolkit's .venv (as make starts it),
    which spares a second interpreter's start-up; else (a nox installed elsewhere) in the .venv's interpreter."""
    argv = [*args, *session.posargs]
    if Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
        _call(session, "-m", "tasks", *argv)
        return
    session.log(_echo(["python", "-m", "tasks", *argv]))
    os.environ[INTERFACE] = _interface()
    from tasks.entry import run  # the toolkit's packages: only in .venv

    with _as_in_a_fresh_interpreter():
        code = run(argv)  # SIGTERM as Ctrl-C while it runs: the run is recorded interrupted (143)
    gc.freeze()  # the task's objects (boto3, moto...) are left out of the interpreter's teardown: ~0.1 s
    if code:
        _fail(session, code)


@contextlib.contextmanager
def _as_in_a_fresh_interpreter() -> Iterator[None]:
    """Logging, SIGTERM and the output streams as a new interpreter has them while a task runs in nox's process,
    nox's own afterwards.

    nox logs everything at DEBUG through the root logger: boto3's debug lines would flood the output.
    """
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    sigterm = signal.getsignal(signal.SIGTERM)
    streams = sys.stdout, sys.stderr  # the task masks secrets in what it prints by wrapping them
    root.handlers.clear()
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = streams
        signal.signal(signal.SIGTERM, sigterm)
        root.handlers[:] = handlers
        root.setLevel(level)


@nox.session(name="local-e2e", default=False)
def local_e2e(session: nox.Session) -> None:
    """Create a context (or rerun --client-id) and run the whole workflow on the embedded AWS."""
    _task(session, "local-e2e")


@nox.session(name="aws-e2e", default=False)
def aws_e2e(session: nox.Session) -> None:
    """Invoke an env's three Lambdas in order for a context: `-- --env stage [--client-id ...]`."""
    _task(session, "aws-e2e")


nox.session(name="e2e", default=False)(aws_e2e)  # the name used before the sessions took the make targets' names


@nox.session(default=False)
def promote(session: nox.Session) -> None:
    """Upload a context's config to an env and record the promotion: `-- --env dev [--client-id ...]`."""
    _task(session, "promote")


@nox.session(name="upload-config", default=False)
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
    """Summarize contexts, or re-render a run's reports (`-- --client-id ...`)."""
    _task(session, "report")


@nox.session(default=False)
def compare(session: nox.Session) -> None:
    """The latest runs of several contexts side by side: `-- lai_weekly_v11 lai_weekly_v12`."""
    _task(session, "report", "compare")


@nox.session(default=False)
def recordings(session: nox.Session) -> None:
    """List the recordings: service, age, hits in the last run, request."""
    _task(session, "recordings")


@nox.session(name="local-aws", default=False)
def local_aws(session: nox.Session) -> None:
    """Serve the embedded AWS (S3 + Lambda) on 127.0.0.1 until Ctrl-C."""
    _task(session, "local-aws")


@nox.session(name="sfn-deploy", default=False)
def sfn_deploy(session: nox.Session) -> None:
    """Create or update an env's Step Functions state machine (a diff first): `-- --env dev [--dry-run]`."""
    _task(session, "sfn-deploy")


@nox.session(name="new-context", default=False)
def new_context(session: nox.Session) -> None:
    """Create a context (burns a client_id); prints it: `-- [--template ...] [--purpose ...]`."""
    _task(session, "context", "new")


@nox.session(default=False)
def contexts(session: nox.Session) -> None:
    """List the contexts: client_id, status, last run, purpose."""
    _task(session, "context", "list")


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
