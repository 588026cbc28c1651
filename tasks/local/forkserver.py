"""The runtime's side of a function environment's zygote (zygote.py): sandboxes forked from a preloaded interpreter.

A cold start then costs a fork instead of a fresh interpreter importing boto3 (about 0.4 s of CPU each), while the
handler still runs under awslambdaric, in the function's own interpreter and packages, with only its own variables.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from pathlib import Path

ZYGOTE = Path(__file__).with_name("zygote.py")
SHARED_VARIABLES = ("TZ", "LANG", "PATH", "PYTHONUNBUFFERED")  # what every sandbox's interpreter starts with
STOP_WAIT_S = 10


class ForkedProcess:
    """A sandbox forked by a zygote: its pid, and its exit code once the zygote reports it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._ended = threading.Event()

    def ended(self, code: int) -> None:
        self.returncode = code
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code once the zygote reports it; None if timeout passed first."""
        self._ended.wait(timeout)
        return self.returncode


class ZygoteGone(Exception):
    """The zygote does not answer (it died, e.g. killed by the OOM killer): a new one must be started.

    Not an OSError: a BrokenPipeError would pass for the Invoke client hanging up, and get no answer at all.
    """


class Zygote:
    """One zygote per function interpreter; spawn() forks a sandbox from it."""

    def __init__(self, python: Path, variables: dict[str, str]) -> None:
        shared = {name: variables[name] for name in SHARED_VARIABLES if name in variables}
        self._process = subprocess.Popen(
            [str(python), "-P", str(ZYGOTE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=shared,
            start_new_session=True,
        )
        self._lock = threading.Lock()  # one spawn at a time: replies come in the order of the requests
        self._children: dict[int, ForkedProcess] = {}
        self._spawned: list[int] = []
        self._reply = threading.Condition()
        threading.Thread(target=self._read, daemon=True, name="zygote-replies").start()

    def spawn(self, launcher: Path, variables: dict[str, str], cwd: Path, log: Path) -> ForkedProcess:
        """Fork a sandbox running launcher with exactly variables, in cwd, writing to log."""
        request = {"launcher": str(launcher), "env": variables, "cwd": str(cwd), "log": str(log)}
        assert self._process.stdin is not None
        with self._lock:
            try:
                self._process.stdin.write(json.dumps(request).encode() + b"\n")
                self._process.stdin.flush()
            except OSError as err:
                raise ZygoteGone(f"the function environment's zygote is gone ({err})") from err
            with self._reply:
                if not self._reply.wait_for(lambda: self._spawned or self._process.poll() is not None, timeout=30):
                    raise ZygoteGone("the function environment's zygote did not answer")
                if not self._spawned:
                    raise ZygoteGone(f"the function environment's zygote ended ({self._process.returncode})")
                return self._children[self._spawned.pop(0)]

    def alive(self) -> bool:
        return self._process.poll() is None

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            kind, pid, *code = line.decode().split()
            with self._reply:
                if kind == "pid":  # a new sandbox (a pid may come round again: a new record each time)
                    self._children[int(pid)] = ForkedProcess(int(pid))
                    self._spawned.append(int(pid))
                elif (child := self._children.pop(int(pid), None)) is not None:
                    child.ended(int(code[0]))
                self._reply.notify_all()
        with self._reply:
            for child in self._children.values():
                if child.returncode is None:
                    child.ended(-9)
            self._reply.notify_all()

    def stop(self) -> None:
        """End the zygote, which ends every descendant of its sandboxes first; a zygote already gone is fine.

        Bounded: a zygote that does not end within STOP_WAIT_S is killed with its process group."""
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        try:
            self._process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
