"""One execution environment: a process running AWS's runtime client (awslambdaric) against its own Runtime API.

As in a Lambda sandbox (and AWS's Runtime Interface Emulator): the process starts, imports the handler (init) and asks
`GET /2018-06-01/runtime/invocation/next` for work; each event is handed over as the answer to that request, and the
client posts the result to `.../invocation/{id}/response` or `.../error` (or `/runtime/init/error` when the import
failed). The environment stays warm between events (module globals persist); a timeout, an out-of-memory or a crash
ends it. Its output goes to a file, so each invocation's log is exactly what was written while it ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tasks.contexts.files import file_lock, lock_held
from tasks.local import peer_process
from tasks.local.forkserver import ForkedProcess, Zygote

LAUNCHER = Path(__file__).with_name("lambda_launcher.py")
RUNTIME_PREFIX = "/2018-06-01/runtime"
TEMP_PREFIX = "vectora-lambda-"  # an environment's folder in the temp folder, locked while in use
IN_USE = ".in-use"
MEMORY_POLL_S = 0.02
FLUSH_WAIT_S = 0.5
SPAWN_WAIT_S = 30
STOP_WAIT_S = 10
PLATFORM_ERRORS = ("Sandbox.Timedout", "Runtime.OutOfMemory", "Runtime.ExitError")


@contextlib.contextmanager
def environment_folder() -> Iterator[Path]:
    """A private temp folder holding a lock while in use, so that the next start removes it if its process died.

    It is created under another name and renamed once locked: a cleaner never sees it unlocked while in use.
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{TEMP_PREFIX}"))
    with file_lock(staging / IN_USE):
        folder = staging.with_name(staging.name[1:])
        staging.rename(folder)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def remove_orphan_folders(tmp: Path) -> None:
    """Remove the environment folders of a runtime killed before it could (kill -9): their lock is free."""
    for entry in os.scandir(tmp):
        if entry.name.startswith(TEMP_PREFIX) and entry.is_dir(follow_symlinks=False):
            lock = Path(entry.path) / IN_USE
            with contextlib.suppress(OSError):  # another user's folder, or gone meanwhile
                if lock.is_file() and not lock_held(lock):  # no lock file: not ours (an older version's), left alone
                    shutil.rmtree(entry.path)


class _RuntimeApiServer(ThreadingHTTPServer):
    """The Runtime API's server: a client that went away (its environment was killed) is not an error to print.

    It serves until stop() without polling (serve_forever wakes every poll interval, and stopping waited for it).
    """

    daemon_threads = True
    timeout = 0  # handle_request() accepts what _serve's selector saw waiting, and never waits itself

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._stop_read, self._stop_write = os.pipe()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Lock()
        self._stopped = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass

    def start(self) -> None:
        """Serve in a thread (not once stopped: the environment was ended while it started)."""
        with self._stopping:
            if not self._stopped:
                self._thread = threading.Thread(target=self._serve, daemon=True, name="runtime-api")
                self._thread.start()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._stop_read, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj == self._stop_read:
                        return
                    self.handle_request()

    def stop(self) -> None:
        """Stop serving (at once) and close the socket; once stopped, nothing more to do."""
        with self._stopping:
            if self._stopped:
                return
            self._stopped = True
            if self._thread is not None:
                os.write(self._stop_write, b"x")
                self._thread.join()
            self.server_close()
            os.close(self._stop_read)
            os.close(self._stop_write)


@dataclass(frozen=True)
class FunctionSpec:
    """What an execution environment runs, and its limits."""

    name: str
    arn: str
    handler: str  # module.function, Lambda's handler string
    task_root: Path
    python: Path
    variables: dict[str, str]
    timeout_s: float
    memory_mb: int


@dataclass(frozen=True)
class Outcome:
    """One invocation as the environment saw it."""

    payload: bytes
    error_type: str | None  # None: the handler answered
    log: str
    duration_ms: float
    init_ms: float | None  # set on the invocation that paid the cold start
    max_memory_mb: int | None
    alive: bool  # the environment can take another event


def _error(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def memory_kb(pid: int, field_name: str) -> int | None:
    """A process's VmRSS or VmHWM (peak) in kB from /proc, or None where there is no /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field_name}:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) if match else None


@dataclass
class _Invocation:
    request_id: str
    event: bytes
    deadline: float
    delivered_at: float | None = None
    delivered_on_poll: int = 0  # which request for the next event received it: the one after it ends the invocation
    finished: threading.Event = field(default_factory=threading.Event)
    payload: bytes = b""
    error_type: str | None = None


class ExecutionEnvironment:
    """A warm-able sandbox for one function: start(), then invoke() one event at a time, kill() when done.

    Its process is forked from the zygote of the function's interpreter (forkserver.py).
    """

    def __init__(self, spec: FunctionSpec, zygote: Zygote) -> None:
        self.spec = spec
        self.zygote = zygote
        self.busy = False
        self.last_used = time.monotonic()
        self._state = threading.Condition()
        self._ready = False  # the client asked for its first event: init is over
        self._init_error: bytes | None = None
        self._polls = 0
        self._pending: _Invocation | None = None
        self._current: _Invocation | None = None
        self._spawned_at = 0.0
        self._init_ms: float | None = None
        self._init_reported = False
        self._resources = contextlib.ExitStack()
        self._log_path = self._resources.enter_context(environment_folder()) / "output.log"
        self._server = _RuntimeApiServer(("127.0.0.1", 0), self._handler())
        self._process: ForkedProcess | None = None
        self._spawned = threading.Event()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Serve this environment's Runtime API and start the runtime client (the cold start begins)."""
        self._server.start()
        port = self._server.server_address[1]
        variables = self.spec.variables | {"AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}", "_HANDLER": self.spec.handler}
        self._spawned_at = time.monotonic()
        self._log_path.touch()
        try:
            self._process = self.zygote.spawn(LAUNCHER, variables, self.spec.task_root, self._log_path)
        finally:
            self._spawned.set()

    def _is_sandbox(self, client_port: int) -> bool:
        """Whether a Runtime API connection from client_port comes from this environment's own process."""
        if not peer_process.supported():  # no /proc: the request ids handed out are the only guard
            return True
        self._spawned.wait(SPAWN_WAIT_S)  # the sandbox may connect before spawn() has returned its pid
        process = self._process
        server_port = self._server.server_address[1]
        return process is not None and peer_process.holds_connection(process.pid, client_port, server_port)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def invoke(self, request_id: str, event: bytes) -> Outcome:
        """Run one event (init first on a cold start) within the function's timeout and memory size."""
        assert self._process is not None, "start() first"
        started = time.monotonic()
        invocation = _Invocation(request_id, event, started + self.spec.timeout_s)
        offset = self._log_path.stat().st_size if self._init_reported else 0
        with self._state:
            self._pending = invocation
            self._state.notify_all()
        error = self._wait(invocation)
        ended = time.monotonic()
        if error is None:
            self._wait_for_next_poll(invocation)
        peak = memory_kb(self._process.pid, "VmHWM")
        log = self._read_log(offset) + self._closing_line(error)
        if error is not None:
            self.kill()
        init_ms, self._init_reported = (None if self._init_reported else self._init_ms), True
        delivered = invocation.delivered_at or ended
        payload, error_type = (invocation.payload, invocation.error_type) if error is None else error
        return Outcome(
            payload=payload,
            error_type=error_type,
            log=log,
            duration_ms=(ended - delivered) * 1000,
            init_ms=init_ms,
            max_memory_mb=None if peak is None else max(1, round(peak / 1024)),
            alive=error is None,
        )

    def _wait(self, invocation: _Invocation) -> tuple[bytes, str] | None:
        """Wait for the answer; on a timeout, out-of-memory, crash or init error, the payload and type to report."""
        assert self._process is not None
        while not invocation.finished.wait(MEMORY_POLL_S):
            if self._init_error is not None:
                return self._init_error, json.loads(self._init_error).get("errorType", "Runtime.Unknown")
            if time.monotonic() >= invocation.deadline:
                message = (
                    f"RequestId: {invocation.request_id} Error: Task timed out after {self.spec.timeout_s:.2f} seconds"
                )
                return _error("Sandbox.Timedout", message), "Sandbox.Timedout"
            rss = memory_kb(self._process.pid, "VmRSS")
            if rss is not None and rss > self.spec.memory_mb * 1024:
                self._stop_process()
                message = f"RequestId: {invocation.request_id} Error: Runtime exited with error: signal: killed"
                return _error("Runtime.OutOfMemory", message), "Runtime.OutOfMemory"
            code = self._process.poll()
            if code is not None:
                time.sleep(MEMORY_POLL_S)  # an init error is posted just before the client exits
                if self._init_error is not None:
                    continue
                reason = f"signal: {signal.Signals(-code).name.lower()}" if code < 0 else f"exit status {code}"
                message = f"RequestId: {invocation.request_id} Error: Runtime exited with error: {reason}"
                return _error("Runtime.ExitError", message), "Runtime.ExitError"
        return None

    def _wait_for_next_poll(self, invocation: _Invocation) -> None:
        """After an answer, wait (briefly) until the client asks for the next event: its output is then all written.

        Counted from the poll that received the invocation: the next one may well have come before this wait begins.
        """
        with self._state:
            delivered_on = invocation.delivered_on_poll
            self._state.wait_for(lambda: self._polls > delivered_on or not self.alive(), timeout=FLUSH_WAIT_S)

    @staticmethod
    def _closing_line(error: tuple[bytes, str] | None) -> str:
        """The platform's own line for an environment that died (the client logs init and handler errors itself)."""
        if error is None or error[1] not in PLATFORM_ERRORS:
            return ""
        return json.loads(error[0])["errorMessage"] + "\n"

    def _read_log(self, offset: int) -> str:
        """What the process wrote from offset on ("" once the environment was ended under the invocation)."""
        try:
            with self._log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _stop_process(self) -> None:
        """Kill the sandbox by its group and by its pid: a kill that lands before its setsid() still ends it."""
        if self._process is not None and self._process.poll() is None:
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(self._process.pid, signal.SIGKILL)
            self._process.wait(STOP_WAIT_S)  # its zygote reports the end; a zygote gone reports every child ended

    def kill(self) -> None:
        """End the process and the Runtime API; remove the environment's files."""
        self._stop_process()
        with self._state:
            self._state.notify_all()
        self._server.stop()
        self._resources.close()

    # --- the Runtime API, called from the server's threads ---

    def _next(self) -> _Invocation | None:
        with self._state:
            if not self._ready:
                self._ready = True
                self._init_ms = (time.monotonic() - self._spawned_at) * 1000
            self._polls += 1
            self._state.notify_all()
            self._state.wait_for(lambda: self._pending is not None or not self.alive())
            invocation, self._pending = self._pending, None
            if invocation is not None:
                invocation.delivered_at = time.monotonic()
                invocation.delivered_on_poll = self._polls
                self._current = invocation
            return invocation

    def _finish(self, request_id: str, payload: bytes, error_type: str | None) -> bool:
        with self._state:
            invocation = self._current
            if invocation is None or invocation.request_id != request_id:
                return False
            invocation.payload, invocation.error_type = payload, error_type
            self._current = None
        invocation.finished.set()
        return True

    def _init_failed(self, payload: bytes) -> bool:
        """Take an init error while init runs; False once the client has asked for an event (init is over)."""
        with self._state:
            if self._ready:
                return False
            self._init_error = payload
            self._state.notify_all()
            return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        environment = self

        class RuntimeApi(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            trusted: bool | None = None  # per connection: whether it comes from the sandbox

            def parse_request(self) -> bool:
                if not super().parse_request():
                    return False
                if self.trusted is None:
                    self.trusted = environment._is_sandbox(self.client_address[1])
                if not self.trusted:
                    self.close_connection = True
                    self._send(403, b'{"errorType": "AccessDenied", "errorMessage": "not this sandbox"}')
                    return False
                return True

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                if self.path != f"{RUNTIME_PREFIX}/invocation/next":
                    return self._send(404, b'{"errorType": "InvalidRequest"}')
                invocation = environment._next()
                if invocation is None:
                    return self._send(410, b'{"errorType": "ShutDown"}')
                deadline_ms = int((time.time() + invocation.deadline - time.monotonic()) * 1000)
                return self._send(
                    200,
                    invocation.event,
                    {
                        "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                        "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": environment.spec.arn,
                        "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{invocation.request_id[:24]}",
                    },
                )

            def do_POST(self) -> None:
                body = self._body()
                if self.path == f"{RUNTIME_PREFIX}/init/error":
                    if not environment._init_failed(body):
                        return self._send(403, b'{"errorType": "InvalidStateTransition"}')
                    return self._send(202, b'{"status": "OK"}')
                match = re.fullmatch(rf"{RUNTIME_PREFIX}/invocation/([^/]+)/(response|error)", self.path)
                if not match:
                    return self._send(404, b'{"errorType": "InvalidRequest"}')
                error_type = None
                if match[2] == "error":
                    error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") or "Unhandled"
                    with contextlib.suppress(ValueError, AttributeError):
                        error_type = json.loads(body).get("errorType") or error_type
                if not environment._finish(match[1], body, error_type):
                    return self._send(400, b'{"errorType": "InvalidRequestID"}')
                return self._send(202, b'{"status": "OK"}')

        return RuntimeApi
