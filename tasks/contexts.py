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

from tasks import client_config
from tasks.checks import EXPECT_FILE
from tasks.errors import UsageError
from tasks.files import file_lock, read_json, write_atomic, write_json

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
        path = self.path(client_id)
        try:
            return Context.from_record(path, read_json(path / CONTEXT_FILE))
        except FileNotFoundError as err:
            raise UsageError(
                f"no context {client_id} in {self.root}: `make contexts` lists them, `make context` creates one"
            ) from err

    def list(self) -> list[Context]:
        """Every complete context, ordered by template then version."""
        contexts = []
        for entry in os.scandir(self.root) if self.root.is_dir() else ():
            if CLIENT_ID.match(entry.name) and os.path.isfile(os.path.join(entry.path, CONTEXT_FILE)):
                contexts.append(Context.from_record(Path(entry.path), read_json(Path(entry.path) / CONTEXT_FILE)))
        return sorted(contexts, key=lambda c: split_client_id(c.client_id))

    def update(self, client_id: str, change: Callable[[dict[str, Any]], None]) -> Context:
        """Apply change to the context's record under its lock and write it back atomically."""
        path = self.path(client_id)
        with file_lock(path / ".context.lock"):
            record = read_json(path / CONTEXT_FILE)
            change(record)
            write_json(path / CONTEXT_FILE, record)
        return Context.from_record(path, record)
