"""Safe file primitives: atomic writes and advisory locks (POSIX fcntl)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tasks.errors import Busy, ConfigError
from tasks.json_documents import json_bytes


def _umask() -> int:
    """The process's umask, read once at import (setting it back at once) while no other thread writes files."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file; mkstemp's 0600 would hide reports from the group


def _stage(path: Path, data: bytes) -> str:
    """data written and synced to a new temporary file beside path (removed again if that fails); its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


@contextlib.contextmanager
def staged(files: Mapping[Path, bytes]) -> Iterator[None]:
    """Write every file beside its path first; when the block succeeds, rename each into place, else remove them.

    So a full disk at any point leaves every one of the files as it was (a rename takes no space).
    """
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            temps.append((_stage(path, data), path))
        yield
        for tmp, path in temps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_atomic(path: Path, data: bytes) -> None:
    """Write data to path so readers see the old file or the new one, never half of either."""
    with staged({path: data}):
        pass


def write_json(path: Path, document: Any) -> None:
    """Write document as indented JSON, atomically."""
    write_atomic(path, json_bytes(document))


def read_json(path: Path) -> Any:
    """A JSON file's document; a file that is not JSON (truncated, not UTF-8) is a ConfigError naming it."""
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (ValueError, RecursionError) as err:
        raise ConfigError(f"{path}: not JSON ({err}); fix or remove it") from err


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on path (created if needed) for the duration of the block, waiting for it."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def run_lock(path: Path, what: str) -> Iterator[None]:
    """Hold a non-blocking lock for a whole run, recording our pid; raise Busy if another process holds it."""
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise Busy(f"{what} is busy: a run is in progress (pid {holder}); wait for it or stop it") from err
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def lock_held(path: Path) -> bool:
    """Whether a live process holds the lock at path (a lock dies with its process, even after kill -9)."""
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
