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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.contexts import client_config
from tasks.pipeline.checks import EXPECT_FILE
from tasks.errors import ConfigError, UsageError
from tasks.contexts.files import file_lock, read_json, write_atomic, write_json

SCHEMA_VERSION = 1
CLIENT_ID = re.compile(r"^(?P<template>[a-z][a-z0-9_]*)_v(?P<version>[1-9][0-9]*)$")
TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_CLIENT_ID = 64
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
    if len(client_id) > MAX_CLIENT_ID or not CLIENT_ID.match(client_id):
        shown = client_id if len(client_id) <= 40 else client_id[:40] + "..."
        raise UsageError(
            f"malformed client_id {shown!r}: use lowercase letters, digits and underscores, "
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


@dataclass(frozen=True)
class Context:
    """A test context as recorded in its context.json."""

    client_id: str
    template: str
    purpose: str
    created_at: str
    status: str
    config_sha256: str
    path: Path
    local: dict[str, Any] | None = None
    envs: dict[str, Any] = field(default_factory=dict)
    runs: tuple[dict[str, Any], ...] = ()

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    def read_config(self) -> bytes:
        """The config's bytes, after checking it parses and has the keys the pipeline needs."""
        return client_config.read_config(self.config_path, self.client_id)

    @property
    def expectations_path(self) -> Path:
        """What a run of this context must show beyond each answer's status (tasks/checks.py)."""
        return self.path / EXPECT_FILE

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    @property
    def last_run(self) -> dict[str, Any] | None:
        return self.runs[-1] if self.runs else None

    @classmethod
    def from_record(cls, path: Path, record: dict[str, Any]) -> Context:
        return cls(
            client_id=record["client_id"],
            template=record["template"],
            purpose=record["purpose"],
            created_at=record["created_at"],
            status=record["status"],
            config_sha256=record["config_sha256"],
            path=path,
            local=record.get("local"),
            envs=record.get("envs") or {},
            runs=tuple(record.get("runs") or ()),
        )


@dataclass(frozen=True)
class BrokenContext:
    """A context folder that cannot be used, and why (a listing shows it and goes on)."""

    client_id: str
    path: Path
    problem: str


# Each key of a context.json record: its type(s) and how to say it.
RECORD_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "client_id": (str, "a string"),
    "template": (str, "a string"),
    "purpose": (str, "a string"),
    "created_at": (str, "a string"),
    "status": (str, "a string"),
    "config_sha256": (str, "a string"),
    "local": ((dict, type(None)), "an object or null"),
    "envs": (dict, "an object"),
    "runs": (list, "a list"),
}
RUN_SUMMARY_KEYS = ("run_id", "env", "status")


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
    for run in record["runs"]:
        if not isinstance(run, dict) or not all(isinstance(run.get(k), str) for k in RUN_SUMMARY_KEYS):
            return f"'runs' holds an entry without string {', '.join(RUN_SUMMARY_KEYS)}"
    last_runs = [(record["local"] or {}).get("last_run")] + [
        env.get("last_run") if isinstance(env, dict) else 0 for env in record["envs"].values()
    ]
    if not all(last is None or (isinstance(last, dict) and isinstance(last.get("status"), str)) for last in last_runs):
        return "'local' or 'envs' holds a record whose last_run has no string status"
    return None


def folder_problem(root: Path, path: Path) -> str | None:
    """Why the folder at path is not a real context folder inside root (a symlink leads elsewhere), or None."""
    for item in (path, path / CONTEXT_FILE, path / "runs"):
        if item.is_symlink():
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
            path = self.root / f"{template}_v{version}"
            try:
                os.mkdir(path)
                break
            except FileExistsError:
                version += 1
        client_id = path.name
        try:
            config = client_config.render_template(
                template_path,
                {
                    "CLIENT_ID": client_id,
                    "NAME": f"{client_id}: {purpose.splitlines()[0][:80] if purpose else template}",
                    "CONTEXT_ID": uuid.uuid4().hex[:12],
                    "PURPOSE": purpose,
                    "ENVIRONMENT": env,
                    "DATE": now.date().isoformat(),
                    "PROMOTED_FROM": previous,
                },
            )
            write_atomic(path / CONFIG_FILE, config)
            expectations = self.expectations_template(template)
            if expectations.is_file():
                write_atomic(path / EXPECT_FILE, expectations.read_bytes())
            record = {
                "schema_version": SCHEMA_VERSION,
                "client_id": client_id,
                "template": template,
                "purpose": purpose,
                "created_at": now.isoformat(),
                "status": "new",
                "config_sha256": client_config.sha256(config),
                "local": None,
                "envs": {},
                "runs": [],
            }
            write_json(path / CONTEXT_FILE, record)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return Context.from_record(path, record)

    def path(self, client_id: str) -> Path:
        return self.root / validate_client_id(client_id)

    def exists(self, client_id: str) -> bool:
        return (self.path(client_id) / CONTEXT_FILE).is_file()

    def load(self, client_id: str) -> Context:
        """The context named client_id; exit 2 naming the file when it is broken."""
        path = self.path(client_id)
        if not os.path.lexists(path / CONTEXT_FILE) and not path.is_symlink():
            raise UsageError(
                f"no context {client_id} in {self.root}: `make contexts` lists them, `make context` creates one"
            )
        return Context.from_record(path, self._record(path))

    def _check_folder(self, path: Path) -> None:
        problem = folder_problem(self.root, path)
        if problem:
            raise ConfigError(problem)

    def _record(self, path: Path) -> dict[str, Any]:
        """The folder's context.json record, checked; a ConfigError naming the file and what is wrong otherwise."""
        self._check_folder(path)
        record = read_json(path / CONTEXT_FILE)
        problem = record_problem(path, record)
        if problem:
            raise ConfigError(f"{path / CONTEXT_FILE}: {problem}; fix or remove the context folder")
        return record

    def scan(self) -> list[Context | BrokenContext]:
        """Every complete context, and every broken one with its problem, ordered by template then version."""
        found: list[Context | BrokenContext] = []
        for entry in os.scandir(self.root) if self.root.is_dir() else ():
            path = Path(entry.path)
            if CLIENT_ID.match(entry.name) and (entry.is_symlink() or os.path.lexists(path / CONTEXT_FILE)):
                try:
                    found.append(Context.from_record(path, self._record(path)))
                except ConfigError as err:
                    found.append(BrokenContext(entry.name, path, str(err)))
        return sorted(found, key=lambda c: split_client_id(c.client_id))

    def list(self) -> list[Context]:
        """Every complete context that is not broken, ordered by template then version."""
        return [c for c in self.scan() if isinstance(c, Context)]

    def update(self, client_id: str, change: Callable[[dict[str, Any]], None]) -> Context:
        """Apply change to the context's record under its lock and write it back atomically."""
        path = self.path(client_id)
        self._check_folder(path)
        with file_lock(path / ".context.lock"):
            record = self._record(path)
            change(record)
            write_json(path / CONTEXT_FILE, record)
        return Context.from_record(path, record)
