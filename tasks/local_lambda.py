"""The local Lambda runtime: run a step's handler in a child process with a Lambda environment.

It enforces the function's timeout, captures its log and answers with what the Invoke API answers:
a payload, a FunctionError when the handler failed, and a log ending in a REPORT line.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.files import file_lock, lock_held
from tasks.settings import STEPS, HandlerSpec, Settings

BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
LOG_TAIL_BYTES = 4096
RUNTIME = "python3.11"
TMP_PREFIX = "vectora-lambda-"  # an invocation's folder in the temp folder, locked while in use
IN_USE = ".in-use"


@contextlib.contextmanager
def invocation_folder() -> Iterator[Path]:
    """A private temp folder holding a lock while in use, so that the next start removes it if its process died.

    It is created under another name and renamed once locked: a cleaner never sees it unlocked while in use.
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{TMP_PREFIX}"))
    with file_lock(staging / IN_USE):
        folder = staging.with_name(staging.name[1:])
        staging.rename(folder)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def remove_orphan_folders(tmp: Path) -> None:
    """Remove the invocation folders whose process was killed before it could (kill -9): their lock is free."""
    for entry in os.scandir(tmp):
        if entry.name.startswith(TMP_PREFIX) and entry.is_dir(follow_symlinks=False):
            lock = Path(entry.path) / IN_USE
            with contextlib.suppress(OSError):  # another user's folder, or gone meanwhile
                if lock.is_file() and not lock_held(lock):  # no lock file: not ours (an older version's), left alone
                    shutil.rmtree(entry.path)


@dataclass(frozen=True)
class LocalResult:
    """What one local invocation produced, in the Invoke API's terms."""

    request_id: str
    payload: bytes
    function_error: str | None
    log: str

    @property
    def log_tail_b64(self) -> str:
        return base64.b64encode(self.log.encode("utf-8")[-LOG_TAIL_BYTES:]).decode("ascii")


@dataclass(frozen=True)
class LocalFunction:
    """A pipeline function as the local runtime knows it: its name, step, env and handler."""

    name: str
    step: str
    env: str
    handler: HandlerSpec


def _name_pattern(template: str) -> re.Pattern[str]:
    steps = "|".join(re.escape(step) for step in STEPS)
    escaped = re.escape(template).replace(r"\{step\}", f"(?P<step>{steps})").replace(r"\{env\}", "(?P<env>[a-z0-9]+)")
    return re.compile(f"^{escaped}$")


def _code_sha256(folder: Path) -> str:
    """A stable digest of a handler's source files, standing in for the deployed package's CodeSha256."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return base64.b64encode(digest.digest()).decode("ascii")


class LocalLambdaRuntime:
    """Runs the configured handlers for any env's function names, against the embedded S3 at s3_endpoint."""

    def __init__(self, settings: Settings, s3_endpoint: str) -> None:
        self.settings = settings
        self.s3_endpoint = s3_endpoint
        self._pattern = _name_pattern(settings.function_name_template)
        self._children: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        remove_orphan_folders(Path(tempfile.gettempdir()))

    def find(self, name: str) -> LocalFunction | None:
        """The function named name (a plain name or an ARN), or None if the runtime has no such function."""
        name = name.rsplit(":function:", 1)[-1].split(":", 1)[0]
        match = self._pattern.match(name)
        if not match:
            return None
        return LocalFunction(name, match["step"], match["env"], self.settings.local_handlers[match["step"]])

    def arn(self, function: LocalFunction) -> str:
        return f"arn:aws:lambda:{self.settings.region}:000000000000:function:{function.name}"

    def environment(self, function: LocalFunction) -> dict[str, str]:
        """The Lambda environment, built from scratch: nothing of the caller's AWS settings leaks in."""
        settings = self.settings
        return {
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings.local_lambda_memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": datetime.now(UTC).strftime("%Y/%m/%d/[$LATEST]local"),
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{RUNTIME}",
            "AWS_REGION": settings.region,
            "AWS_DEFAULT_REGION": settings.region,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_ENDPOINT_URL": self.s3_endpoint,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "LAMBDA_TASK_ROOT": str(function.handler.source_dir),
            "TZ": "UTC",
            "LANG": "C.UTF-8",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join([str(function.handler.source_dir), *map(str, settings.local_lambda_layers)]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "CONFIG_BUCKET": settings.config_bucket(function.env),
            "DATA_BUCKET": settings.data_bucket(function.env),
            "NEWSLETTERS_BUCKET": settings.newsletters_bucket(function.env),
            "ENV": function.env,
        }

    def configuration(self, function: LocalFunction) -> dict[str, Any]:
        """The function's configuration, in GetFunctionConfiguration's shape."""
        source = function.handler.source_dir
        return {
            "FunctionName": function.name,
            "FunctionArn": self.arn(function),
            "Runtime": RUNTIME,
            "Architectures": ["arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"],
            "Handler": f"{function.handler.module}.{function.handler.function}",
            "CodeSha256": _code_sha256(source) if source.is_dir() else "",
            "Version": "$LATEST",
            "LastModified": datetime.fromtimestamp(
                max((p.stat().st_mtime for p in source.rglob("*.py")), default=0), UTC
            ).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "Timeout": math.ceil(self.settings.local_lambda_timeout),
            "MemorySize": self.settings.local_lambda_memory_mb,
            "State": "Active",
            "Environment": {
                "Variables": {
                    k: v
                    for k, v in self.environment(function).items()
                    if k in ("CONFIG_BUCKET", "DATA_BUCKET", "NEWSLETTERS_BUCKET", "ENV")
                }
            },
        }

    def invoke(self, function: LocalFunction, event: bytes) -> LocalResult:
        """Run the handler once in a child process and answer as Lambda would."""
        request_id = str(uuid.uuid4())
        timeout = self.settings.local_lambda_timeout
        env = self.environment(function) | {
            "VECTORA_LOCAL_REQUEST_ID": request_id,
            "VECTORA_LOCAL_FUNCTION_ARN": self.arn(function),
            "VECTORA_LOCAL_TIMEOUT": str(timeout),
        }
        with invocation_folder() as tmp:
            result_path = Path(tmp) / "result.json"
            started = time.monotonic()
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-P",
                    str(BOOTSTRAP),
                    function.handler.module,
                    function.handler.function,
                    str(result_path),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp,
                start_new_session=True,
            )
            with self._lock:
                self._children.add(child)
            try:
                output, _ = child.communicate(event, timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                output, _ = child.communicate()
                timed_out = True
            except BaseException:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                raise
            finally:
                with self._lock:
                    self._children.discard(child)
            elapsed_ms = (time.monotonic() - started) * 1000
            outcome = json.loads(result_path.read_text()) if result_path.is_file() else None
        return self._answer(request_id, timeout, output.decode("utf-8", "replace"), outcome, timed_out, elapsed_ms)

    def kill_all(self) -> None:
        """Kill every handler still running (the caller stopped waiting): no orphan survives the runtime."""
        with self._lock:
            children = list(self._children)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)

    def _answer(
        self,
        request_id: str,
        timeout: float,
        output: str,
        outcome: dict[str, Any] | None,
        timed_out: bool,
        elapsed_ms: float,
    ) -> LocalResult:
        memory = self.settings.local_lambda_memory_mb
        if timed_out:
            message = f"Task timed out after {timeout:.2f} seconds"
            payload: Any = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {request_id} Error: {message}",
            }
            output += f"{datetime.now(UTC).isoformat()} {request_id} {message}\n"
            error, duration, init, used = "Unhandled", timeout * 1000, None, None
        elif outcome is None:
            payload = {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited without providing a reason",
            }
            error, duration, init, used = "Unhandled", elapsed_ms, None, None
        else:
            payload = outcome["payload"]
            error = None if outcome["ok"] else "Unhandled"
            duration, init, used = (
                outcome.get("duration_ms", elapsed_ms),
                outcome.get("init_ms"),
                outcome["max_memory_mb"],
            )
        report = (
            f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\t"
            f"Billed Duration: {math.ceil(duration)} ms\tMemory Size: {memory} MB\t"
            + (f"Max Memory Used: {used} MB\t" if used is not None else "")
            + (f"Init Duration: {init:.2f} ms\t" if init is not None else "")
        )
        log = f"START RequestId: {request_id} Version: $LATEST\n{output}END RequestId: {request_id}\n{report}\n"
        return LocalResult(request_id, json.dumps(payload).encode("utf-8"), error, log)
