"""The local Lambda service: the configured envs' functions, each with its execution environments.

A function exists only for the envs this runtime serves. An invoke takes a warm environment of the function, else
starts one (a cold start: init runs once, Init Duration is reported then) up to the function's reserved concurrency,
beyond which it is throttled (429). Idle environments are reaped. Each function has its own settings, defaulting to
the deployed ones: timeout, memory size, and variables from a SAM-style env-vars file on top of the bucket variables.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import platform
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.concurrency import all_at_once
from tasks.errors import ConfigError
from tasks.local.execution_env import ExecutionEnvironment, FunctionSpec
from tasks.local.forkserver import Zygote, ZygoteGone
from tasks.local.function_envs import FunctionEnvironments
from tasks.local.services import function_environment
from tasks.pipeline.report_line import LOG_TAIL_BYTES
from tasks.settings import STEPS, HandlerSpec, Settings

RUNTIME = "python3.11"
REAP_INTERVAL_S = 5.0
MOTO_DEFAULT_ACCOUNT = "123456789012"
# A function name or ARN as Lambda's API takes it (Lambda's own pattern), with the parts the local runtime checks.
REFERENCE = re.compile(
    r"^(?:arn:(?:aws[a-zA-Z-]*)?:lambda:)?(?:(?P<region>[a-z]{2}(?:-gov|-iso|-isob)?-[a-z]+-\d):)?"
    r"(?:(?P<account>\d{12}):)?(?:function:)?(?P<name>[a-zA-Z0-9._-]+)(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?$"
)


def local_account_id() -> str:
    """The one account of the embedded AWS: moto's, which its STS answers (MOTO_ACCOUNT_ID, else moto's default)."""
    return os.environ.get("MOTO_ACCOUNT_ID") or MOTO_DEFAULT_ACCOUNT


class Throttled(Exception):
    """Every environment the function may have is busy (its reserved concurrency is reached)."""


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


@dataclass(frozen=True)
class FunctionReference:
    """A FunctionName as a caller gave it: a name, a partial or a full ARN, perhaps with a qualifier."""

    name: str
    qualifier: str | None
    region: str | None
    account: str | None

    def arn(self, region: str) -> str:
        """The ARN it names, region and account defaulting to the local ones."""
        return f"arn:aws:lambda:{self.region or region}:{self.account or local_account_id()}:function:{self.name}"


def parse_reference(text: str) -> FunctionReference | None:
    """The parts of a FunctionName, or None when it is not one."""
    match = REFERENCE.match(text)
    return FunctionReference(match["name"], match["qualifier"], match["region"], match["account"]) if match else None


def _name_pattern(template: str) -> re.Pattern[str]:
    steps = "|".join(re.escape(step) for step in STEPS)
    escaped = re.escape(template).replace(r"\{step\}", f"(?P<step>{steps})").replace(r"\{env\}", "(?P<env>[a-z0-9]+)")
    return re.compile(f"^{escaped}$")


def _code_digest(folder: Path) -> tuple[str, int]:
    """A stable digest and the size of a handler's source files, standing in for the package's CodeSha256, CodeSize."""
    digest, size = hashlib.sha256(), 0
    for path in sorted(folder.rglob("*.py")) if folder.is_dir() else ():
        code = path.read_bytes()
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(code)
        size += len(code)
    return (base64.b64encode(digest.digest()).decode("ascii") if size else ""), size


def load_env_vars(path: Path | None) -> dict[str, dict[str, str]]:
    """A SAM-style env-vars file: {"Parameters": {...} for every function, "<step or function name>": {...}}."""
    if path is None:
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the env-vars file ({err.strerror}); fix LOCAL_ENV_VARS") from err
    except ValueError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(document, dict) or not all(
        isinstance(block, dict) and all(isinstance(v, str | int | float | bool) for v in block.values())
        for block in document.values()
    ):
        raise ConfigError(f'{path}: expected {{"Parameters": {{"NAME": "value"}}, "<function>": {{...}}}}')
    return {scope: {name: str(value) for name, value in block.items()} for scope, block in document.items()}


class LocalLambdaRuntime:
    """Runs the configured handlers for the functions of envs, against the embedded AWS at endpoint."""

    def __init__(self, settings: Settings, endpoint: str, envs: Iterable[str] = ("local",)) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.envs = tuple(envs)
        self.variables = load_env_vars(settings.local_env_vars)
        self._pattern = _name_pattern(settings.function_name_template)
        self._environments = FunctionEnvironments(settings.local_lambda_env_cache)
        self._pools: dict[str, list[ExecutionEnvironment]] = {}
        self._zygotes: dict[Path, Zygote] = {}  # one per function interpreter, started with its first environment
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._reap, daemon=True, name="lambda-reaper").start()

    def find(self, reference: str) -> LocalFunction | None:
        """The function a name or an ARN (of this region and account) names, whatever its qualifier; else None."""
        parsed = parse_reference(reference)
        if parsed is None or parsed.region not in (None, self.settings.region):
            return None
        match = self._pattern.match(parsed.name)
        if not match or match["env"] not in self.envs or parsed.account not in (None, local_account_id()):
            return None
        return LocalFunction(parsed.name, match["step"], match["env"], self.settings.local_handlers[match["step"]])

    def functions(self) -> list[LocalFunction]:
        found = (self.find(self.settings.function_name(step, env)) for env in self.envs for step in STEPS)
        return [f for f in found if f is not None]

    def arn(self, function: LocalFunction) -> str:
        return f"arn:aws:lambda:{self.settings.region}:{local_account_id()}:function:{function.name}"

    def own_variables(self, function: LocalFunction) -> dict[str, str]:
        """The function's configured variables: the buckets and env, then the env-vars file's (all, then its own)."""
        settings = self.settings
        return {
            "CONFIG_BUCKET": settings.config_bucket(function.env),
            "DATA_BUCKET": settings.data_bucket(function.env),
            "NEWSLETTERS_BUCKET": settings.newsletters_bucket(function.env),
            "ENV": function.env,
            **self.variables.get("Parameters", {}),
            **self.variables.get(function.step, {}),
            **self.variables.get(function.name, {}),
        }

    def environment(self, function: LocalFunction) -> dict[str, str]:
        """The Lambda environment, built from scratch: nothing of the caller's AWS settings or packages leaks in."""
        settings = self.settings
        source = function.handler.source_dir
        return {
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings.function_memory_mb(function.step)),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": datetime.now(UTC).strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{RUNTIME}",
            "AWS_REGION": settings.region,
            "AWS_DEFAULT_REGION": settings.region,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            "LAMBDA_TASK_ROOT": str(source),
            "LAMBDA_RUNTIME_DIR": str(self._environments.cache_dir),
            "TZ": "UTC",
            "LANG": "C.UTF-8",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": ":".join([str(source), *map(str, settings.local_lambda_layers)]),
            "PYTHONUNBUFFERED": "1",
            **self.own_variables(function),
            **function_environment(self.endpoint, settings),  # the web through the embedded server (services.py)
        }

    def configuration(self, function: LocalFunction) -> dict[str, Any]:
        """The function's configuration, in GetFunctionConfiguration's shape (every field boto3's waiters read)."""
        source = function.handler.source_dir
        code_sha256, code_size = _code_digest(source)
        document = {
            "FunctionName": function.name,
            "FunctionArn": self.arn(function),
            "Runtime": RUNTIME,
            "Role": f"arn:aws:iam::{local_account_id()}:role/local-lambda-execution",  # none: no permission is checked
            "Handler": f"{function.handler.module}.{function.handler.function}",
            "CodeSize": code_size,
            "Description": "",
            "Timeout": math.ceil(self.settings.function_timeout(function.step)),
            "MemorySize": self.settings.function_memory_mb(function.step),
            "LastModified": datetime.fromtimestamp(
                max((p.stat().st_mtime for p in source.rglob("*.py")), default=0), UTC
            ).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "CodeSha256": code_sha256,
            "Version": "$LATEST",
            "Environment": {"Variables": self.own_variables(function)},
            "TracingConfig": {"Mode": "PassThrough"},
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": ["arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"],
            "EphemeralStorage": {"Size": 512},
            "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{function.name}"},
        }
        # Lambda's RevisionId changes with the configuration: here, a digest of it.
        digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).digest()
        return {**document, "RevisionId": str(uuid.UUID(bytes=digest[:16]))}

    def _spec(self, function: LocalFunction) -> FunctionSpec:
        handler = function.handler
        return FunctionSpec(
            name=function.name,
            arn=self.arn(function),
            handler=f"{handler.module}.{handler.function}",
            task_root=handler.source_dir,
            python=self._environments.python(self.settings.requirement_folders(function.step)),
            variables=self.environment(function),
            timeout_s=self.settings.function_timeout(function.step),
            memory_mb=self.settings.function_memory_mb(function.step),
        )

    def _zygote(self, spec: FunctionSpec) -> Zygote:
        """The zygote of spec's interpreter (call with self._lock held)."""
        zygote = self._zygotes.get(spec.python)
        if zygote is None or not zygote.alive():  # first use, or it died (killed): start another
            zygote = self._zygotes[spec.python] = Zygote(spec.python, spec.variables)
        return zygote

    def _new_environment(self, function: LocalFunction) -> ExecutionEnvironment:
        """An environment for function, forked from its interpreter's zygote (call with self._lock held)."""
        spec = self._spec(function)
        return ExecutionEnvironment(spec, self._zygote(spec))

    def preload(self, functions: Iterable[LocalFunction]) -> None:
        """Start the zygotes of these functions' interpreters, without waiting: they import boto3 meanwhile."""
        with self._lock:
            for function in functions:
                self._zygote(self._spec(function))

    def prewarm(self, functions: Iterable[LocalFunction]) -> None:
        """Start one environment per function now, so their cold starts overlap (and overlap what comes next)."""
        for function in functions:
            with self._lock:
                if self._pools.get(function.name):
                    continue
                environment = self._new_environment(function)
                self._pools.setdefault(function.name, []).append(environment)
            try:
                environment.start()
            except ZygoteGone:  # the first invoke starts another
                self._discard(function, environment)

    def invoke(self, function: LocalFunction, event: bytes) -> LocalResult:
        """Run one event in a warm environment (or a new one) and answer as Lambda would; Throttled when all busy."""
        environment = self._acquire(function)
        request_id = str(uuid.uuid4())
        try:
            outcome = environment.invoke(request_id, event)
        finally:
            self._release(function, environment)
        report = (
            f"REPORT RequestId: {request_id}\tDuration: {outcome.duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(outcome.duration_ms)} ms\tMemory Size: {environment.spec.memory_mb} MB\t"
            + (f"Max Memory Used: {outcome.max_memory_mb} MB\t" if outcome.max_memory_mb is not None else "")
            + (f"Init Duration: {outcome.init_ms:.2f} ms\t" if outcome.init_ms is not None else "")
        )
        log = f"START RequestId: {request_id} Version: $LATEST\n{outcome.log}END RequestId: {request_id}\n{report}\n"
        return LocalResult(request_id, outcome.payload, "Unhandled" if outcome.error_type else None, log)

    def _acquire(self, function: LocalFunction, retry: bool = True) -> ExecutionEnvironment:
        with self._lock:
            pool = self._pools.setdefault(function.name, [])
            for environment in pool:
                if not environment.busy and environment.alive():
                    environment.busy = True
                    return environment
            if len(pool) >= self.settings.local_lambda_concurrency:
                raise Throttled(function.name)
            environment = self._new_environment(function)
            environment.busy = True
            pool.append(environment)
        try:
            environment.start()
        except ZygoteGone:  # it died since its last fork: drop this environment, start a new zygote, once
            self._discard(function, environment)
            if not retry:
                raise
            return self._acquire(function, retry=False)
        return environment

    def _discard(self, function: LocalFunction, environment: ExecutionEnvironment) -> None:
        with self._lock:
            pool = self._pools.get(function.name, [])
            if environment in pool:
                pool.remove(environment)
        environment.kill()

    def _release(self, function: LocalFunction, environment: ExecutionEnvironment) -> None:
        with self._lock:
            environment.busy = False
            environment.last_used = time.monotonic()
        if not environment.alive():
            self._discard(function, environment)

    def _reap(self) -> None:
        """Every few seconds, end the environments idle for longer than LOCAL_LAMBDA_IDLE_SECONDS."""
        while not self._stopped.wait(min(REAP_INTERVAL_S, self.settings.local_lambda_idle_seconds / 2)):
            limit = time.monotonic() - self.settings.local_lambda_idle_seconds
            with self._lock:
                idle = [e for pool in self._pools.values() for e in pool if not e.busy and e.last_used < limit]
                for pool in self._pools.values():
                    pool[:] = [e for e in pool if e not in idle]
            for environment in idle:
                environment.kill()

    def environments(self, function: LocalFunction) -> int:
        """How many execution environments the function has now."""
        with self._lock:
            return len(self._pools.get(function.name, []))

    def kill_all(self) -> None:
        """End every environment (the caller stopped): no process, port or folder survives the runtime."""
        self._stopped.set()
        with self._lock:
            environments = [e for pool in self._pools.values() for e in pool]
            self._pools.clear()
            zygotes, self._zygotes = list(self._zygotes.values()), {}
        try:  # each waits for its process to be reported ended: together, not one after the other
            all_at_once([environment.kill for environment in environments])
        finally:
            for zygote in zygotes:
                zygote.stop()  # a zygote already gone is fine: the others are still stopped
