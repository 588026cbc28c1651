"""The context store: one folder per test context under contexts/, created with the next client_id.

contexts/<client_id>/context.json   the record (purpose, status, runs, per-env records)
contexts/<client_id>/client_config.yaml   the rendered config: the bytes uploaded are the bytes tested
contexts/<client_id>/runs/<run_id>/   one folder per run
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.contexts import client_config
from tasks.contexts.files import file_lock, read_json, write_atomic, write_json
from tasks.contexts.records import Pull, RecordError, RunSummary, TargetRecord, target_key, to_json
from tasks.errors import ConfigError, UsageError, brief
from tasks.pipeline.checks import EXPECT_FILE

SCHEMA_VERSION = 2  # 2: targets keyed by env and endpoint, run summaries, pulls
MAX_CLIENT_ID = 64
# A client_id: `{template}_v{N}`, at most MAX_CLIENT_ID characters (the lookahead), wherever a name is taken for one.
CLIENT_ID = re.compile(rf"^(?=.{{1,{MAX_CLIENT_ID}}}$)(?P<template>[a-z][a-z0-9_]*)_v(?P<version>[1-9][0-9]*)$")
TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# The real normalize-score refuses data paths holding these words, and its paths hold the client_id.
PIPELINE_REFUSED_WORDS = ("test", "synthetic")
CONTEXT_FILE = "context.json"
CONFIG_FILE = "client_config.yaml"


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_purpose(now: datetime) -> str:
    return f"local E2E run of {now:%Y-%m-%d %H:%M} UTC"


def validate_client_id(client_id: str) -> str:
    """Return client_id if well formed: lowercase, digits, underscores, `_vN` with N >= 1, at most 64 characters."""
    if not client_id:
        raise UsageError("client_id is empty: give one like lai_weekly_v3 (`make contexts` lists them)")
    if not CLIENT_ID.match(client_id):
        raise UsageError(
            f"malformed client_id {brief(client_id)}: use lowercase letters, digits and underscores, "
            f"starting with a letter and ending in _v<N> with N >= 1, at most {MAX_CLIENT_ID} characters "
            "(e.g. lai_weekly_v3)"
        )
    return client_id


def check_pipeline_accepts(template: str) -> None:
    """Refuse a template whose client_ids the real pipeline would refuse (see PIPELINE_REFUSED_WORDS)."""
    for word in PIPELINE_REFUSED_WORDS:
        if word in template.lower():
            raise UsageError(
                f"template {template!r} would make client_ids like {template}_v1, and the real normalize-score "
                f"refuses data paths containing {word!r} (ingested/<client_id>/...): use a name without "
                f"{' or '.join(repr(w) for w in PIPELINE_REFUSED_WORDS)}"
            )


def split_client_id(client_id: str) -> tuple[str, int]:
    match = CLIENT_ID.match(validate_client_id(client_id))
    assert match is not None
    return match["template"], int(match["version"])


def client_id_order(name: str) -> tuple[str, int] | None:
    """A folder or key name's (template, version) when it is a valid client_id, else None (not a context)."""
    match = CLIENT_ID.match(name)
    return (match["template"], int(match["version"])) if match else None


@dataclass(frozen=True)
class Context:
    """A test context as recorded in its context.json (see tasks/contexts/records.py for the records it keeps)."""

    client_id: str
    template: str
    purpose: str
    created_at: str
    status: str
    config_sha256: str
    path: Path
    local: RunSummary | None = None  # the last local run
    targets: dict[str, TargetRecord] = field(default_factory=dict)  # by target key: `dev`, `dev@<endpoint>`
    runs: tuple[RunSummary, ...] = ()
    pulled: Pull | None = None

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    def read_config(self) -> bytes:
        """The config's bytes, after checking it parses and has the keys the pipeline needs."""
        return client_config.read_config(self.config_path, self.client_id)

    @property
    def expectations_path(self) -> Path:
        """What a run of this context must show beyond each answer's status (tasks/pipeline/checks.py)."""
        return self.path / EXPECT_FILE

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    @property
    def last_run(self) -> RunSummary | None:
        return self.runs[-1] if self.runs else None

    @property
    def last_local_pass(self) -> RunSummary | None:
        """The last passed local run: promote requires it to have tested the config's current bytes."""
        return next((r for r in reversed(self.runs) if r.env == "local" and r.status == "passed"), None)

    def target(self, env: str, endpoint: str | None) -> TargetRecord:
        """The record of env on endpoint (None: the real AWS env); an empty one if nothing was done there yet."""
        return self.targets.get(target_key(env, endpoint)) or TargetRecord(env, endpoint)

    def real_targets(self) -> list[TargetRecord]:
        """The records of real envs only: an emulated promotion or pass never counts as the real env's."""
        return [t for t in self.targets.values() if not t.emulated]

    def configs_written(self, env: str, endpoint: str | None) -> set[str]:
        """SHA-256 of the configs this context put at its key on a target (uploads, rollbacks) or pulled from there."""
        pulled = self.pulled
        same_place = pulled is not None and (pulled.env, pulled.endpoint) == (env, endpoint)
        return self.target(env, endpoint).written() | ({pulled.sha256} if pulled and same_place else set())

    def configs_known(self, env: str, endpoint: str | None) -> set[str]:
        """The configs that are this context's on a target: written or pulled there, or tested by its local runs."""
        tested = {r.config_sha256 for r in self.runs if r.env == "local" and r.config_sha256}
        return self.configs_written(env, endpoint) | tested | {self.config_sha256}

    def with_target(self, target: TargetRecord) -> Context:
        return replace(self, targets={**self.targets, target.key: target})

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "client_id": self.client_id,
            "template": self.template,
            "purpose": self.purpose,
            "created_at": self.created_at,
            "status": self.status,
            "config_sha256": self.config_sha256,
            "local": to_json(self.local) if self.local else None,
            "targets": {key: to_json(target) for key, target in self.targets.items()},
            "runs": [to_json(run) for run in self.runs],
            "pulled": to_json(self.pulled) if self.pulled else None,
        }

    @classmethod
    def from_json(cls, path: Path, record: dict[str, Any]) -> Context:
        """A context from its checked record (see record_problem); nested records raise RecordError if broken."""
        local, pulled = record.get("local"), record.get("pulled")
        return cls(
            client_id=record["client_id"],
            template=record["template"],
            purpose=record["purpose"],
            created_at=record["created_at"],
            status=record["status"],
            config_sha256=record["config_sha256"],
            path=path,
            local=RunSummary.from_json(local, "local") if local else None,
            targets={k: TargetRecord.from_json(t, f"targets[{k!r}]") for k, t in record["targets"].items()},
            runs=tuple(RunSummary.from_json(r, "runs[]") for r in record["runs"]),
            pulled=Pull.from_json(pulled) if pulled else None,
        )


@dataclass(frozen=True)
class BrokenContext:
    """A context folder that cannot be used, and why (a listing shows it and goes on)."""

    client_id: str
    path: Path
    problem: str


# Each top-level key of a context.json record: its type(s) and how to say it.
RECORD_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "client_id": (str, "a string"),
    "template": (str, "a string"),
    "purpose": (str, "a string"),
    "created_at": (str, "a string"),
    "status": (str, "a string"),
    "config_sha256": (str, "a string"),
    "local": ((dict, type(None)), "an object or null"),
    "targets": (dict, "an object"),
    "runs": (list, "a list"),
}


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """A schema 1 record (`envs` by env name, `local: {last_run}`) in this version's shape; others as they are."""
    if "envs" not in record or "targets" in record or not isinstance(record.get("envs"), dict):
        return record
    targets = {}
    for env, old in record["envs"].items():
        if not isinstance(old, dict):
            return record  # left for record_problem to name
        last = old.get("last_run") or {}
        endpoint = last.get("endpoint") or next((u.get("endpoint") for u in old.get("uploads") or []), None)
        targets[target_key(env, endpoint)] = {
            "env": env,
            "endpoint": endpoint,
            "promotion": old.get("promotion"),
            "uploads": old.get("uploads") or [],
            "rollbacks": old.get("rollbacks") or [],
            "last_run": old.get("last_run"),
        }
    local = record.get("local")
    upgraded = {k: v for k, v in record.items() if k != "envs"}
    return upgraded | {"targets": targets, "local": local.get("last_run") if isinstance(local, dict) else local}


def record_problem(path: Path, record: Any) -> str | None:
    """What is wrong with a context.json's record for the folder at path, or None."""
    if not isinstance(record, dict):
        return f"is not a JSON object but {type(record).__name__}"
    for key, (kind, said) in RECORD_TYPES.items():
        if key not in record:
            return f"lacks the key {key!r}"
        if not isinstance(record[key], kind):
            return f"{key!r} should be {said}, not {type(record[key]).__name__}"
    if record["client_id"] != path.name:
        return f"names client_id {record['client_id']!r}, not its folder's {path.name!r}"
    return None


def folder_problem(root: Path, path: Path) -> str | None:
    """Why the folder at path is not a real context folder inside root (a symlink leads elsewhere), or None."""
    for item in (str(path), f"{path}/{CONTEXT_FILE}", f"{path}/runs"):
        if os.path.islink(item):
            return f"{item} is a symlink (to {os.readlink(item)}): a context folder must be a real folder inside {root}"
    return None


class ContextStore:
    """Creates, loads, lists and updates contexts under one folder; safe under concurrent processes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    def template_path(self, template: str) -> Path:
        path = self.templates_dir / f"{template}.yaml"
        if not TEMPLATE_NAME.match(template or "") or not path.is_file():
            known = ", ".join(sorted(p.stem for p in self.templates_dir.glob("*.yaml") if "." not in p.stem)) or "none"
            raise UsageError(f"unknown template {template!r}: known templates are {known} (in {self.templates_dir})")
        return path

    def expectations_template(self, template: str) -> Path:
        return self.templates_dir / f"{template}.expect.yaml"

    def versions(self, template: str) -> list[int]:
        """Versions of template used by local contexts (folders, so reserved ones count too)."""
        found = []
        for entry in os.scandir(self.root) if self.root.is_dir() else ():
            match = CLIENT_ID.match(entry.name)
            if match and match["template"] == template and entry.is_dir():
                found.append(int(match["version"]))
        return found

    def create(
        self, template: str, purpose: str, now: datetime, env: str = "local", other_versions: Iterable[int] = ()
    ) -> Context:
        """Create a context from template with the next free version.

        other_versions adds versions used elsewhere (the env's S3 history), so none is ever reused.
        """
        template_path = self.template_path(template)
        check_pipeline_accepts(template)
        client_config.check_required_keys(client_config.load_yaml(template_path), template_path)
        used = self.versions(template)
        version = max([0, *used, *other_versions]) + 1
        previous = f"{template}_v{max(used)}" if used else ""
        while True:
            if client_id_order(f"{template}_v{version}") is None:
                raise UsageError(
                    f"no client_id left for template {template!r}: {template}_v{version} would be over "
                    f"{MAX_CLIENT_ID} characters; use another template name"
                )
            path = self.root / f"{template}_v{version}"
            try:
                os.mkdir(path)
                break
            except FileExistsError:
                version += 1
        client_id = path.name

        def config() -> bytes:
            values = {
                "CLIENT_ID": client_id,
                "NAME": f"{client_id}: {purpose.splitlines()[0][:80] if purpose else template}",
                "CONTEXT_ID": uuid.uuid4().hex[:12],
                "PURPOSE": purpose,
                "ENVIRONMENT": env,
                "DATE": now.date().isoformat(),
                "PROMOTED_FROM": previous,
            }
            return client_config.render_template(template_path, values)

        return self.fill(path, config, lambda sha: Context(client_id, template, purpose, now.isoformat(), "new", sha, path))

    def fill(self, path: Path, config: Callable[[], bytes], record: Callable[[str], Context]) -> Context:
        """Write a just-reserved context folder: its config, its template's expectations, then context.json.

        record makes the Context from the config's SHA-256. Whatever fails, the folder is removed: no half context.
        """
        try:
            data = config()
            write_atomic(path / CONFIG_FILE, data)
            context = record(client_config.sha256(data))
            expectations = self.expectations_template(context.template)
            if expectations.is_file():
                write_atomic(path / EXPECT_FILE, expectations.read_bytes())
            write_json(path / CONTEXT_FILE, context.to_json())
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return context

    def path(self, client_id: str) -> Path:
        return self.root / validate_client_id(client_id)

    def exists(self, client_id: str) -> bool:
        return (self.path(client_id) / CONTEXT_FILE).is_file()

    def load(self, client_id: str) -> Context:
        """The context named client_id; exit 2 naming the file when it is broken."""
        path = self.path(client_id)
        if not os.path.lexists(path / CONTEXT_FILE) and not path.is_symlink():
            raise UsageError(
                f"no context {client_id} in {self.root}: `make contexts` lists them, `make new-context` creates one"
            )
        return self._context(path)

    def _check_folder(self, path: Path) -> None:
        problem = folder_problem(self.root, path)
        if problem:
            raise ConfigError(problem)

    def _context(self, path: Path) -> Context:
        """The folder's context, checked; a ConfigError naming the file and what is wrong otherwise."""
        self._check_folder(path)
        record = upgrade(read_json(path / CONTEXT_FILE))
        problem = record_problem(path, record)
        if problem is None:
            try:
                return Context.from_json(path, record)
            except RecordError as err:
                problem = str(err)
        raise ConfigError(f"{path / CONTEXT_FILE}: {problem}; fix or remove the context folder")

    def scan(self) -> list[Context | BrokenContext]:
        """Every complete context, and every broken one with its problem, ordered by template then version."""
        found: list[Context | BrokenContext] = []
        for entry in os.scandir(self.root) if self.root.is_dir() else ():
            if CLIENT_ID.match(entry.name) and (entry.is_symlink() or os.path.lexists(f"{entry.path}/{CONTEXT_FILE}")):
                path = Path(entry.path)
                try:
                    found.append(self._context(path))
                except ConfigError as err:
                    found.append(BrokenContext(entry.name, path, str(err)))
        return sorted(found, key=lambda c: split_client_id(c.client_id))

    def list(self) -> list[Context]:
        """Every complete context that is not broken, ordered by template then version."""
        return [c for c in self.scan() if isinstance(c, Context)]

    def update(self, client_id: str, change: Callable[[Context], Context]) -> Context:
        """Apply change (a new Context from the current one) under the context's lock; write it back atomically."""
        path = self.path(client_id)
        self._check_folder(path)
        with file_lock(path / ".context.lock"):
            context = change(self._context(path))
            write_json(path / CONTEXT_FILE, context.to_json())
        return context
