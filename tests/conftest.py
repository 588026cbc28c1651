"""Shared fixtures. Tests never reach real AWS: dummy credentials, no profile, every endpoint on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.contexts.store import ContextStore
from tasks.local.server import EmbeddedAws
from tasks.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
SAFE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_DEFAULT_REGION": "eu-west-3",
    "VECTORA_DOTENV": os.devnull,  # never the developer's .env
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder: unit (the pure core), integration (real servers on 127.0.0.1), e2e (real make)."""
    for item in items:
        kind = item.path.parent.name
        if kind in ("unit", "integration", "e2e"):
            item.add_marker(kind)


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dummy credentials; no profile, endpoint, .env or HOME of the developer's reaches a test or its children, and
    no interface (make sets one for `make test`: a test's `python -m tasks` is a python user's)."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "LOCAL_", "XDG_")) or name in ("VECTORA_ENV", "CONTEXTS_DIR", "VECTORA_INTERFACE"):
            monkeypatch.delenv(name)
    for name, value in SAFE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    temp = tmp_path_factory.mktemp("temp")  # temp files too: private, and out of reach of other processes' cleaners
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))


PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE")


@pytest.fixture
def no_developer_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or CA file of the developer's in this process: the tests of the web stand up their own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def safe_environ(**extra: str) -> dict[str, str]:
    """An environment for a child process: this one, minus AWS settings, plus dummy credentials."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k not in ("VECTORA_ENV", "VECTORA_INTERFACE")
    }
    return keep | SAFE_ENV | extra


def run_tasks(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m tasks ARGS` in a child process with exactly env, and no standard input (as in CI)."""
    return subprocess.run(
        [sys.executable, "-m", "tasks", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


SKIP = {".venv", ".lambda-envs", ".nox", ".git", ".pytest_cache", ".ruff_cache", "__pycache__", ".env"}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the working tree without generated contexts, its .venv a link to ours."""
    target = tmp_path_factory.mktemp("clone") / "repo"

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n in SKIP}
        if Path(folder) == REPO / "contexts":
            skipped |= {n for n in names if n != "templates"}
        return skipped

    shutil.copytree(REPO, target, ignore=ignore)
    (target / ".venv").symlink_to(REPO / ".venv")
    (REPO / ".lambda-envs").mkdir(exist_ok=True)  # function environments are cached by content: share them
    (target / ".lambda-envs").symlink_to(REPO / ".lambda-envs")
    return target


MAKE = ("make", "--no-print-directory")


@contextlib.contextmanager
def local_aws_server(clone: Path, stop: signal.Signals = signal.SIGINT, code: int = 0) -> Iterator[dict[str, str]]:
    """`make local-aws`'s server (its task, as `python -m tasks local-aws`) in clone; yields the variables that point
    flows at it.

    At the end it is sent stop, and must exit with code."""
    server = subprocess.Popen(
        [str(clone / ".venv" / "bin" / "python"), "-m", "tasks", "local-aws", "--port", "0"],
        cwd=clone,
        env=safe_environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first_line = server.stdout.readline()
        endpoint = first_line.split()[3].rstrip(":")
        assert endpoint.startswith("http://127.0.0.1:"), first_line
        yield {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
    finally:
        server.send_signal(stop)
        server.wait(timeout=30)
    assert server.returncode == code


def make_environ(unset: Iterable[str] = (), **variables: str) -> dict[str, str]:
    """The environment of a `make` run: safe, plus variables (as if exported in the shell), minus unset; the clone's
    .env counts."""
    environ = safe_environ(**variables)
    for name in ("MAKEFLAGS", "MAKELEVEL", "VECTORA_DOTENV", "VIRTUAL_ENV", *unset):
        environ.pop(name, None)
    return environ


def make(clone: Path, *args: str, unset: Iterable[str] = (), **variables: str) -> subprocess.CompletedProcess[str]:
    """The real `make ARGS` in clone (ARGS may set make variables: `CLIENT_ID=...`); unset: variables to remove."""
    return subprocess.run(
        [*MAKE, *args], cwd=clone, capture_output=True, text=True, env=make_environ(unset, **variables), timeout=300
    )


@pytest.fixture
def contexts_dir(tmp_path: Path) -> Path:
    """An empty contexts folder holding the committed templates."""
    folder = tmp_path / "contexts"
    shutil.copytree(REPO / "contexts" / "templates", folder / "templates")
    return folder


def settings_for(contexts_dir: Path, **variables: str) -> Settings:
    """Settings for the repository's code with contexts in contexts_dir and the given variables."""
    return load_settings(
        REPO,
        {"VECTORA_ENV": "local", "CONTEXTS_DIR": str(contexts_dir), **variables},
        environ={"VECTORA_DOTENV": os.devnull},
    )


@pytest.fixture
def settings(contexts_dir: Path) -> Settings:
    return settings_for(contexts_dir)


@pytest.fixture
def store(contexts_dir: Path) -> ContextStore:
    return ContextStore(contexts_dir)


@pytest.fixture
def embedded(settings: Settings) -> Iterator[str]:
    """A running embedded AWS with the sample pipeline; yields its endpoint."""
    with EmbeddedAws(settings).running() as endpoint:
        yield endpoint


@pytest.fixture
def slow_handler(tmp_path: Path) -> Path:
    """A handler folder whose handler writes its runner's pid to `runner` and its own to `pid`, then sleeps a minute.

    The runner (the process running the task: nox under make, else `python -m tasks`) is the parent of the zygote the
    handler's environment was forked from.
    """
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "handler.py").write_text(
        "import os, time, pathlib\n"
        "def lambda_handler(event, context):\n"
        "    zygote = pathlib.Path(f'/proc/{os.getppid()}/stat').read_text()\n"
        "    runner = zygote.rsplit(')', 1)[1].split()[1]\n"
        "    pathlib.Path(__file__).with_name('runner').write_text(runner)\n"
        "    pathlib.Path(__file__).with_name('pid').write_text(str(os.getpid()))\n"
        "    time.sleep(60)\n"
    )
    return folder


def start_and_wait_for_handler(env: dict[str, str], folder: Path, **streams: Any) -> tuple[subprocess.Popen, int]:
    """Start `python -m tasks local-e2e`; return it and the slow handler's pid once that handler runs."""
    child = subprocess.Popen([sys.executable, "-m", "tasks", "local-e2e"], cwd=REPO, env=env, text=True, **streams)
    deadline = time.monotonic() + 60
    while not (folder / "pid").exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    return child, int((folder / "pid").read_text())


def edit_cached_row(
    contexts: Path, client_id: str, change: Callable[[dict[str, Any]], dict[str, Any]], digest_of: Path | None = None
) -> None:
    """Edit a context's row in the listing cache as a person would (the digest left as it was), or, with digest_of
    (its context.json), with the digest recomputed as the toolkit computes it (a row damaged by a writer's bug)."""
    cache = contexts / ".listing.cache"
    header, *lines = cache.read_bytes().split(b"\n")
    edited = []
    for line in lines:
        meta, tab, row = line.partition(b"\t")
        if meta.split(b" ")[0] == client_id.encode():
            row = json.dumps(change(json.loads(row))).encode()
            if digest_of is not None:
                digest = hashlib.sha256(digest_of.read_bytes() + b"\0" + row).hexdigest()
                meta = b" ".join([*meta.split(b" ")[:4], digest.encode()])
        edited.append(meta + tab + row)
    cache.write_bytes(b"\n".join([header, *edited]))
