"""One frozen Settings: defaults < .env < process environment < command-line flags.

It also resolves an env (local, dev, stage, prod) into function names, bucket names, profile, region and endpoint.
"""

from __future__ import annotations

import io
import math
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from tasks.errors import ConfigError, UsageError
from tasks.json_documents import parse_json
from tasks.masking import secret_values

ENVS = ("local", "dev", "stage", "prod")
STEPS = ("ingest", "normalize-score", "newsletter")
DEFAULT_PROFILE = "rag-lai-prod"
DEFAULT_SOURCE = "the team default"  # what chose DEFAULT_PROFILE, when nothing else chose a profile
# What each function has when deployed (DESIGN section 3): timeout in seconds, memory size in MB.
DEPLOYED = {"ingest": (900.0, 512), "normalize-score": (900.0, 1024), "newsletter": (900.0, 1024)}
MAX_PORT = 65535
# The keys boto3 would read from the environment, handed to it from .env too (never to a local Lambda).
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
DOTENV_VARIABLE = "VECTORA_DOTENV"  # another .env to read instead of the repository's (tests: none)
# boto3 service name -> the suffix of its AWS_ENDPOINT_URL_<SERVICE> variable.
SERVICES = {"s3": "S3", "lambda": "LAMBDA", "logs": "CLOUDWATCH_LOGS", "stepfunctions": "SFN"}
# What a local handler's calls beyond the embedded S3 may do, per service (LOCAL_SERVICES): "bedrock", "http" (the
# web), and "*" for every other AWS service (a named one, e.g. sqs=passthrough, takes the modes of "*").
SERVICE_MODES = {
    "bedrock": ("stub", "deny", "passthrough", "record", "replay"),
    "http": ("replay", "deny", "passthrough", "record"),
    "*": ("deny", "passthrough"),
}

# Every variable the toolkit reads, with its default. .env.example documents each one.
DEFAULTS: dict[str, str] = {
    "VECTORA_ENV": "dev",
    "CONTEXTS_DIR": "contexts",
    "AWS_REGION": "eu-west-3",
    "AWS_PROFILE": "",
    "AWS_PROFILE_DEV": "",
    "AWS_PROFILE_STAGE": "",
    "AWS_PROFILE_PROD": "",
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_SESSION_TOKEN": "",
    "FUNCTION_NAME_TEMPLATE": "vectora-inbox-{step}-v2-{env}",
    "CONFIG_BUCKET_TEMPLATE": "vectora-inbox-config-{env}",
    "DATA_BUCKET_TEMPLATE": "vectora-inbox-data-{env}",
    "NEWSLETTERS_BUCKET_TEMPLATE": "vectora-inbox-newsletters-{env}",
    "CONFIG_KEY_TEMPLATE": "clients/{client_id}.yaml",
    "STATE_MACHINE_NAME_TEMPLATE": "vectora-inbox-e2e-v2-{env}",
    "SFN_ROLE_ARN": "",
    "LAMBDA_READ_TIMEOUT": "910",
    "E2E_TIMEOUT": "2700",
    "PROGRESS_INTERVAL": "30",
    "CONFIRM_PROD": "",
    "ALLOCATION_ENVS": "",
    "AWS_ENDPOINT_URL": "",
    "AWS_ENDPOINT_URL_S3": "",
    "AWS_ENDPOINT_URL_LAMBDA": "",
    "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": "",
    "AWS_ENDPOINT_URL_SFN": "",
    "LOCAL_AWS_PORT": "0",
    "PUBLISH_RUNS": "",
    "LOCAL_LAMBDA_TIMEOUT": "",
    "LOCAL_LAMBDA_MEMORY": "",
    "LOCAL_ENV_VARS": "lambdas/env.json",
    "LOCAL_LAMBDA_CONCURRENCY": "10",
    "LOCAL_LAMBDA_IDLE_SECONDS": "300",
    "LOCAL_LAMBDA_ENV_CACHE": ".lambda-envs",
    "LOCAL_EVENT_RETRY_DELAY": "1",
    "LOCAL_HANDLER_INGEST": "lambdas/ingest:handler.lambda_handler",
    "LOCAL_HANDLER_NORMALIZE_SCORE": "lambdas/normalize_score:handler.lambda_handler",
    "LOCAL_HANDLER_NEWSLETTER": "lambdas/newsletter:handler.lambda_handler",
    "LOCAL_LAMBDA_LAYERS": "lambdas/common",
    "LOCAL_CANONICAL_DIR": "lambdas/canonical",
    "LOCAL_SERVICES": "bedrock=stub,http=replay,*=deny",
    "LOCAL_RECORDINGS": "lambdas/recordings",
    "LOCAL_CA_DIR": ".local-ca",
    "LOCAL_REPLAY": "strict",
    "LOCAL_BEDROCK_STUB_RULES": "",
    "LOCAL_SKIP_REQUIREMENTS": "",
    "LOCAL_AWS_UPSTREAM": "",
    "LOCAL_PASSTHROUGH_PROFILE": "",
    "LOCAL_SAMPLE_FEEDS": "lambdas/ingest/sample_items.json",
    "MAX_CONFIG_BYTES": "1048576",
    "MAX_PUBLISHED_RUN_BYTES": "10485760",
}


# The fields each name template may use ({name} only), the first ones required, and an example for errors.
TEMPLATE_FIELDS = {
    "FUNCTION_NAME_TEMPLATE": (("step",), ("env",)),
    "CONFIG_BUCKET_TEMPLATE": ((), ("env",)),
    "DATA_BUCKET_TEMPLATE": ((), ("env",)),
    "NEWSLETTERS_BUCKET_TEMPLATE": ((), ("env",)),
    "CONFIG_KEY_TEMPLATE": (("client_id",), ()),
}


@dataclass(frozen=True)
class Bound:
    """The range a numeric setting must be in (inclusive), its unit, and whether it counts whole things."""

    low: float
    high: float
    unit: str
    whole: bool = False


# Each numeric setting's range: what Lambda allows where it mirrors Lambda, else what keeps the toolkit sane (an idle
# time of 1e-9 s made the reaper spin, an infinite timeout made a stop wait forever).
BOUNDS = {
    "LAMBDA_READ_TIMEOUT": Bound(1, 86400, "s"),
    "E2E_TIMEOUT": Bound(1, 86400, "s"),
    "PROGRESS_INTERVAL": Bound(0.05, 3600, "s"),
    "LOCAL_LAMBDA_TIMEOUT": Bound(1, 900, "s"),
    "LOCAL_LAMBDA_MEMORY": Bound(128, 10240, "MB", whole=True),
    "LOCAL_LAMBDA_CONCURRENCY": Bound(1, 1000, "environments", whole=True),
    "LOCAL_LAMBDA_IDLE_SECONDS": Bound(0.1, 86400, "s"),
    "LOCAL_EVENT_RETRY_DELAY": Bound(0.01, 3600, "s"),
}


@dataclass(frozen=True)
class HandlerSpec:
    """Where a step's Lambda code lives: a source folder and a Lambda-style handler `module.function`."""

    source_dir: Path
    module: str
    function: str


@dataclass(frozen=True)
class Profile:
    """The AWS profile an env uses, and the setting that chose it (errors name both)."""

    name: str
    source: str  # --profile, AWS_PROFILE_<ENV>, AWS_PROFILE or "the team default"


@dataclass(frozen=True)
class Settings:
    """Everything a task needs to know about names, places and limits, resolved once."""

    root: Path
    contexts_dir: Path
    env: str
    region: str
    profiles: Mapping[str, Profile]  # per env; an env absent uses no profile (keys, or the local env)
    credentials: Mapping[str, str]  # AWS_ACCESS_KEY_ID, ... from .env or the environment, when both keys are set
    function_name_template: str
    config_bucket_template: str
    data_bucket_template: str
    newsletters_bucket_template: str
    config_key_template: str
    state_machine_name_template: str
    sfn_role_arn: str  # the state machine's execution role ("" : none set)
    lambda_read_timeout: float
    e2e_timeout: float
    progress_interval: float
    confirm_prod: bool
    allocation_envs: tuple[str, ...]
    endpoints: Mapping[str, str]
    local_aws_port: int
    publish_runs: bool
    local_lambda_timeout: float | None  # None: each function's deployed timeout
    local_lambda_memory_mb: int | None  # None: each function's deployed memory size
    local_env_vars: Path | None
    local_lambda_concurrency: int
    local_lambda_idle_seconds: float
    local_lambda_env_cache: Path
    local_event_retry_delay: float
    local_handlers: Mapping[str, HandlerSpec]
    local_lambda_layers: tuple[Path, ...]
    local_canonical_dir: Path
    local_services: Mapping[str, str]
    local_recordings: Path
    local_ca_dir: Path  # the clone's CA for https in record/replay (git-ignored; the key is its user's only)
    local_replay_lenient: bool  # LOCAL_REPLAY=lenient: a replay miss is left to the handler, not a failed run
    local_bedrock_stub_rules: Path | None  # a team's rules for the Bedrock stub (stub_rules.py)
    sample_normalizer: bool  # normalize-score (the sample's Bedrock caller) is the sample's: the built-in stub fits it
    local_skip_requirements: frozenset[str]  # steps whose handler folder's requirements.txt is not installed
    local_aws_upstream: str
    local_passthrough_profile: str | None
    local_sample_feeds: Path | None
    max_config_bytes: int  # a client config read from S3 is refused beyond this size
    max_published_run_bytes: int  # a published run.json is skipped beyond this size
    secrets: tuple[str, ...] = ()

    @property
    def profile(self) -> str | None:
        """The AWS profile of this env, or None (keys from .env or the environment, or the local env)."""
        chosen = self.profiles.get(self.env)
        return chosen.name if chosen else None

    def credentials_origin(self) -> str:
        """Which env asks for which profile, for messages: "env prod, profile 'x' from AWS_PROFILE_PROD"."""
        chosen = self.profiles.get(self.env)
        if chosen is None:
            return f"env {self.env}, no profile: keys from .env or the environment"
        return f"env {self.env}, profile {chosen.name!r} from {chosen.source}"

    def requirement_folders(self, step: str) -> list[Path]:
        """The folders whose requirements.txt a step's function environment installs: its handler folder (unless
        LOCAL_SKIP_REQUIREMENTS names the step: code plus layers, as deployed), then its layers."""
        own = [] if step in self.local_skip_requirements else [self.local_handlers[step].source_dir]
        return [*own, *self.local_lambda_layers]

    def function_name(self, step: str, env: str | None = None) -> str:
        return self.function_name_template.format(step=step, env=env or self.env)

    def config_bucket(self, env: str | None = None) -> str:
        return self.config_bucket_template.format(env=env or self.env)

    def data_bucket(self, env: str | None = None) -> str:
        return self.data_bucket_template.format(env=env or self.env)

    def newsletters_bucket(self, env: str | None = None) -> str:
        return self.newsletters_bucket_template.format(env=env or self.env)

    def function_timeout(self, step: str) -> float:
        """A local function's timeout: LOCAL_LAMBDA_TIMEOUT, else the deployed one."""
        return self.local_lambda_timeout or DEPLOYED[step][0]

    def function_memory_mb(self, step: str) -> int:
        """A local function's memory size: LOCAL_LAMBDA_MEMORY, else the deployed one."""
        return self.local_lambda_memory_mb or DEPLOYED[step][1]

    def config_key(self, client_id: str) -> str:
        return self.config_key_template.format(client_id=client_id)

    def endpoint(self, service: str) -> str | None:
        """The custom endpoint for a boto3 service (AWS_ENDPOINT_URL_<SERVICE>, else AWS_ENDPOINT_URL), or None."""
        return self.endpoints.get(service) or self.endpoints.get("*") or None

    @property
    def custom_endpoint(self) -> str | None:
        """A custom endpoint in use, if any: such a run is never a pass on the real env."""
        return next((self.endpoint(s) for s in SERVICES if self.endpoint(s)), None)


def validate_env(env: str) -> str:
    """Return env if it is one we know, else raise a UsageError that lists the choices."""
    if env not in ENVS:
        raise UsageError(f"unknown env {env!r}: use one of {', '.join(ENVS)}")
    return env


def read_dotenv(path: Path) -> dict[str, str]:
    """Read a .env file; a line python-dotenv cannot parse is an error naming file and line."""
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text ({err.reason}); save the file as UTF-8") from err
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise ConfigError(f"{path}:{binding.original.line}: this line is not KEY=value; fix or remove it")
    return {key: value or "" for key, value in dotenv_values(stream=io.StringIO(text)).items()}


def _handler_spec(root: Path, variable: str, value: str) -> HandlerSpec:
    folder, sep, handler = value.rpartition(":")
    module, dot, function = handler.rpartition(".")
    if not (sep and folder and dot and module and function):
        raise ConfigError(
            f"{variable}={value!r}: expected FOLDER:module.function, e.g. lambdas/ingest:handler.lambda_handler"
        )
    return HandlerSpec(source_dir=(root / folder).resolve(), module=module, function=function)


def _number(variable: str, value: str) -> float:
    """A numeric setting within its range (BOUNDS); NaN, infinities and anything outside are a ConfigError naming it."""
    bound = BOUNDS[variable]
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (bound.low <= number <= bound.high) or (bound.whole and not number.is_integer()):
        kind = "a whole number" if bound.whole else "a number"
        raise ConfigError(f"{variable}={value!r}: expected {kind} from {bound.low:g} to {bound.high:g} {bound.unit}")
    return number


def _byte_count(variable: str, value: str) -> int:
    """A size limit in bytes: a positive whole number, else a ConfigError naming the variable."""
    text = value.strip()
    if not (text.isascii() and text.isdigit() and int(text) > 0):
        raise ConfigError(f"{variable}={value!r}: expected a positive whole number of bytes, e.g. {DEFAULTS[variable]}")
    return int(text)


def _optional_number(variable: str, value: str) -> float | None:
    return _number(variable, value) if value.strip() else None


def _optional_int(variable: str, value: str) -> int | None:
    number = _optional_number(variable, value)
    return None if number is None else int(number)


def _template(variable: str, value: str) -> str:
    """A name template whose fields are known ({step}, {env}, {client_id}) and required ones present, else a
    ConfigError naming it (str.format would fail later with a traceback, or fill {0} from nothing)."""
    required, optional = TEMPLATE_FIELDS[variable]
    allowed = " and ".join(f"{{{name}}}" for name in (*required, *optional))
    fix = f"use {allowed}, e.g. {DEFAULTS[variable]}"
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(value)]
    except ValueError as err:
        raise ConfigError(f"{variable}={value!r}: not a name template ({err}); {fix}") from err
    for name, spec, conversion in fields:
        if name is not None and (name not in (*required, *optional) or spec or conversion):
            field = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ConfigError(f"{variable}={value!r}: unknown field {{{field}}}; {fix}")
    missing = [name for name in required if name not in {field for field, _, _ in fields}]
    if missing:
        raise ConfigError(f"{variable}={value!r}: lacks {{{missing[0]}}}, so names would collide; {fix}")
    return value


def _function_secrets(path: Path | None) -> list[dict[str, str]]:
    """The functions' variables in the env-vars file (LOCAL_ENV_VARS), as strings, for masking; a file that is not
    JSON (nested too deeply too) is a ConfigError; a missing or misshapen one is left to the local runtime to name."""
    try:
        text = path.read_text(encoding="utf-8") if path else "{}"
    except (OSError, UnicodeDecodeError):
        return []
    try:
        document: Any = parse_json(text)
    except ValueError as err:
        raise ConfigError(f"LOCAL_ENV_VARS: {path}: not JSON ({err}); fix the file or the setting") from err
    blocks = document.values() if isinstance(document, dict) else ()
    return [{str(k): str(v) for k, v in block.items()} for block in blocks if isinstance(block, dict)]


def _existing_file(root: Path, value: str) -> Path | None:
    """A file a setting names, relative to the repository; None when the setting is empty or its default is absent."""
    if not value.strip():
        return None
    path = (root / value).resolve()
    if path.is_file() or value != DEFAULTS["LOCAL_ENV_VARS"]:
        return path  # a file the user named must exist: reading it says so
    return None


def handler_variable(step: str) -> str:
    """The variable naming a step's local handler, e.g. LOCAL_HANDLER_NORMALIZE_SCORE."""
    return "LOCAL_HANDLER_" + step.upper().replace("-", "_")


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes")


def service_modes(value: str) -> dict[str, str]:
    """LOCAL_SERVICES (`service=mode,...`) over its defaults; an unknown mode is an error listing the choices."""
    modes: dict[str, str] = {}
    for part in f"{DEFAULTS['LOCAL_SERVICES']},{value}".split(","):
        service, sep, mode = (p.strip().lower() for p in part.partition("="))
        if not part.strip():
            continue
        allowed = SERVICE_MODES.get(service, SERVICE_MODES["*"])
        if not (sep and service and mode in allowed):
            raise ConfigError(f"LOCAL_SERVICES: {part.strip()!r}: expected {service or 'SERVICE'}={'|'.join(allowed)}")
        modes[service] = mode
    return modes


def _steps(variable: str, value: str) -> frozenset[str]:
    """A comma-separated list of steps (`*` for all), each checked."""
    named = {part.strip() for part in value.split(",") if part.strip()}
    if "*" in named:
        return frozenset(STEPS)
    unknown = sorted(named - set(STEPS))
    if unknown:
        raise ConfigError(f"{variable}: {unknown[0][:40]!r} is not a step: use {', '.join(STEPS)} or *")
    return frozenset(named)


def _replay_mode(value: str) -> str:
    mode = value.strip().lower()
    if mode not in ("strict", "lenient"):
        raise ConfigError(f"LOCAL_REPLAY={value[:40]!r}: expected strict (a miss fails the run) or lenient")
    return mode


def parse_port(text: str, what: str = "LOCAL_AWS_PORT") -> int:
    """A TCP port, 0 to 65535 (0 picks a free one), else a UsageError naming what."""
    if not text.isascii() or not text.isdigit() or int(text) > MAX_PORT:
        raise UsageError(f"{what}={text!r}: expected a port number from 0 to {MAX_PORT} (0 picks a free one)")
    return int(text)


def _endpoint(variable: str, value: str) -> str:
    """A custom endpoint, checked to be an http(s) URL with a host (boto3 would fail with a traceback)."""
    try:
        url = urlsplit(value)
        valid = url.scheme in ("http", "https") and bool(url.hostname) and (url.port or 0) >= 0
    except ValueError:  # a port out of range
        valid = False
    if not valid:
        raise UsageError(f"{variable}={value!r}: expected a URL such as http://127.0.0.1:4566")
    return value


def profile_variable(env: str) -> str:
    """The variable naming an env's own profile, e.g. AWS_PROFILE_PROD."""
    return f"AWS_PROFILE_{env.upper()}"


def _profile(env: str, flag: str | None, merged: Mapping[str, str], environ: Mapping[str, str]) -> Profile | None:
    """The flag, else AWS_PROFILE_<ENV>, else AWS_PROFILE, else none with keys (.env, CI, OIDC), else the default."""
    for name, source in ((flag, "--profile"), (merged[profile_variable(env)], profile_variable(env))):
        if name:
            return Profile(name, source)
    if merged["AWS_PROFILE"]:
        return Profile(merged["AWS_PROFILE"], "AWS_PROFILE")
    if merged["AWS_ACCESS_KEY_ID"] or environ.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return None
    return Profile(DEFAULT_PROFILE, DEFAULT_SOURCE)


def _profiles(flag: str | None, merged: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, Profile]:
    """Each AWS env's profile; the local env never uses one."""
    chosen = {env: _profile(env, flag, merged, environ) for env in ENVS if env != "local"}
    return {env: profile for env, profile in chosen.items() if profile}


def _credentials(merged: Mapping[str, str]) -> dict[str, str]:
    """The keys set in .env or the environment, when there is a key pair (a lone one is left to boto3 to refuse)."""
    found = {name: merged[name] for name in CREDENTIAL_VARIABLES if merged[name]}
    return found if {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= found.keys() else {}


def load_settings(
    root: Path,
    flags: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve the settings for the repository at root.

    flags uses the variable names of DEFAULTS (e.g. {"VECTORA_ENV": "stage"}); None values are ignored.
    """
    environ = os.environ if environ is None else environ
    dotenv = read_dotenv(Path(environ.get(DOTENV_VARIABLE) or root / ".env"))
    merged: dict[str, str] = dict(DEFAULTS)
    merged.update({k: v for k, v in dotenv.items() if k in DEFAULTS})
    merged.update({k: v for k, v in environ.items() if k in DEFAULTS})
    merged.update({k: v for k, v in (flags or {}).items() if v is not None and k in DEFAULTS})
    env = validate_env(merged["VECTORA_ENV"])
    templates = {variable: _template(variable, merged[variable]) for variable in TEMPLATE_FIELDS}
    env_vars = _existing_file(root, merged["LOCAL_ENV_VARS"])
    handlers = {step: _handler_spec(root, handler_variable(step), merged[handler_variable(step)]) for step in STEPS}
    return Settings(
        root=root,
        contexts_dir=(root / merged["CONTEXTS_DIR"]).resolve(),
        env=env,
        region=merged["AWS_REGION"],
        profiles=_profiles((flags or {}).get("AWS_PROFILE"), merged, environ),
        credentials=_credentials(merged),
        function_name_template=templates["FUNCTION_NAME_TEMPLATE"],
        config_bucket_template=templates["CONFIG_BUCKET_TEMPLATE"],
        data_bucket_template=templates["DATA_BUCKET_TEMPLATE"],
        newsletters_bucket_template=templates["NEWSLETTERS_BUCKET_TEMPLATE"],
        config_key_template=templates["CONFIG_KEY_TEMPLATE"],
        state_machine_name_template=merged["STATE_MACHINE_NAME_TEMPLATE"],
        sfn_role_arn=merged["SFN_ROLE_ARN"].strip(),
        lambda_read_timeout=_number("LAMBDA_READ_TIMEOUT", merged["LAMBDA_READ_TIMEOUT"]),
        e2e_timeout=_number("E2E_TIMEOUT", merged["E2E_TIMEOUT"]),
        progress_interval=_number("PROGRESS_INTERVAL", merged["PROGRESS_INTERVAL"]),
        confirm_prod=_flag(merged["CONFIRM_PROD"]),
        publish_runs=_flag(merged["PUBLISH_RUNS"]),
        secrets=secret_values(
            [dotenv, environ, *_function_secrets(env_vars)], not_secret=DEFAULTS.keys() - CREDENTIAL_VARIABLES
        ),
        allocation_envs=tuple(validate_env(e.strip()) for e in merged["ALLOCATION_ENVS"].split(",") if e.strip()),
        endpoints={
            service: _endpoint(variable, merged[variable])
            for service, variable in [("*", "AWS_ENDPOINT_URL")]
            + [(s, f"AWS_ENDPOINT_URL_{suffix}") for s, suffix in SERVICES.items()]
            if merged[variable]
        },
        local_aws_port=parse_port(merged["LOCAL_AWS_PORT"]),
        local_lambda_timeout=_optional_number("LOCAL_LAMBDA_TIMEOUT", merged["LOCAL_LAMBDA_TIMEOUT"]),
        local_lambda_memory_mb=_optional_int("LOCAL_LAMBDA_MEMORY", merged["LOCAL_LAMBDA_MEMORY"]),
        local_env_vars=env_vars,
        local_lambda_concurrency=int(_number("LOCAL_LAMBDA_CONCURRENCY", merged["LOCAL_LAMBDA_CONCURRENCY"])),
        local_lambda_idle_seconds=_number("LOCAL_LAMBDA_IDLE_SECONDS", merged["LOCAL_LAMBDA_IDLE_SECONDS"]),
        local_lambda_env_cache=(root / merged["LOCAL_LAMBDA_ENV_CACHE"]).resolve(),
        local_event_retry_delay=_number("LOCAL_EVENT_RETRY_DELAY", merged["LOCAL_EVENT_RETRY_DELAY"]),
        local_handlers=handlers,
        local_lambda_layers=tuple(
            (root / part).resolve() for part in merged["LOCAL_LAMBDA_LAYERS"].split(os.pathsep) if part
        ),
        local_canonical_dir=(root / merged["LOCAL_CANONICAL_DIR"]).resolve(),
        local_services=service_modes(merged["LOCAL_SERVICES"]),
        local_recordings=(root / merged["LOCAL_RECORDINGS"]).resolve(),
        local_ca_dir=(root / merged["LOCAL_CA_DIR"]).resolve(),
        local_replay_lenient=_replay_mode(merged["LOCAL_REPLAY"]) == "lenient",
        local_bedrock_stub_rules=_existing_file(root, merged["LOCAL_BEDROCK_STUB_RULES"]),
        local_skip_requirements=_steps("LOCAL_SKIP_REQUIREMENTS", merged["LOCAL_SKIP_REQUIREMENTS"]),
        sample_normalizer=merged[handler_variable("normalize-score")] == DEFAULTS[handler_variable("normalize-score")],
        local_aws_upstream=merged["LOCAL_AWS_UPSTREAM"].rstrip("/"),
        local_passthrough_profile=merged["LOCAL_PASSTHROUGH_PROFILE"] or None,
        local_sample_feeds=(root / merged["LOCAL_SAMPLE_FEEDS"]).resolve() if merged["LOCAL_SAMPLE_FEEDS"] else None,
        max_config_bytes=_byte_count("MAX_CONFIG_BYTES", merged["MAX_CONFIG_BYTES"]),
        max_published_run_bytes=_byte_count("MAX_PUBLISHED_RUN_BYTES", merged["MAX_PUBLISHED_RUN_BYTES"]),
    )
