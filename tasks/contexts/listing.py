"""What listing a context shows, for every context, cached by the identity of each context.json.

`make contexts` and `make report` show one line per context. Parsing 10,000 context.json files into records takes
about a second, so the lines' data is kept in `contexts/.listing.json`, each entry stamped with its context.json's
inode, size and modification time: a file rewritten since (atomic writes make a new inode), broken, or gone is seen
at once and read again. The cache is only an accelerator: it may be deleted at any time.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tasks.contexts.files import write_atomic
from tasks.contexts.records import RecordError, RunSummary, target_label
from tasks.contexts.store import (
    CLIENT_ID,
    CONTEXT_FILE,
    BrokenContext,
    Context,
    ContextStore,
)
from tasks.errors import ConfigError

CACHE_FILE = ".listing.json"
CACHE_SCHEMA = 1
LISTED_RUN_KEYS = ("run_id", "env", "status", "started_at", "endpoint", "total_seconds", "cost_usd")


@dataclass(frozen=True)
class Listed:
    """One context as a listing shows it."""

    client_id: str
    folder: str
    status: str
    purpose: str
    promoted: tuple[str, ...]  # target labels with a promotion: dev, dev(emulated)...
    statuses: dict[str, str]  # the last run's status per target label (local, dev...)
    last_run: RunSummary | None

    @property
    def path(self) -> Path:
        return Path(self.folder)

    @classmethod
    def of(cls, context: Context) -> Listed:
        last_runs = {"local": context.local} | {
            target_label(t.env, t.endpoint): t.last_run for t in context.targets.values()
        }
        return cls(
            client_id=context.client_id,
            folder=str(context.path),
            status=context.status,
            purpose=context.purpose,
            promoted=tuple(sorted(target_label(t.env, t.endpoint) for t in context.targets.values() if t.promotion)),
            statuses={label: run.status for label, run in last_runs.items() if run},
            last_run=context.last_run,
        )

    def to_json(self) -> dict[str, Any]:
        """The cached form: the last run cut to what a listing shows (the cache stays small at 10,000 contexts)."""
        last = asdict(self.last_run) if self.last_run else None
        return {
            **asdict(self),
            "folder": None,
            "last_run": {k: v for k, v in last.items() if k in LISTED_RUN_KEYS} if last else None,
        }

    @classmethod
    def from_json(cls, folder: str, data: dict[str, Any]) -> Listed:
        """A cached entry (written by this module: a damaged one raises TypeError, KeyError or ValueError)."""
        last = data["last_run"]
        return cls(
            client_id=data["client_id"],
            folder=folder,
            status=data["status"],
            purpose=data["purpose"],
            promoted=tuple(data["promoted"]),
            statuses=dict(data["statuses"]),
            last_run=RunSummary(**last) if last else None,
        )


def _stamp(folder: str) -> list[int] | None:
    """The identity of a context folder's context.json (inode, size, mtime), or None when it is not a plain file."""
    try:
        info = os.lstat(f"{folder}/{CONTEXT_FILE}")
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or os.path.islink(f"{folder}/runs"):
        return None  # a symlink: the store names the problem
    return [info.st_ino, info.st_size, info.st_mtime_ns]


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    ok = isinstance(document, dict) and document.get("schema") == CACHE_SCHEMA
    return document.get("entries", {}) if ok and isinstance(document.get("entries"), dict) else {}


def listing(store: ContextStore) -> list[Listed | BrokenContext]:
    """Every context as a listing shows it (broken ones with their problem), by template then version."""
    cache_path = store.root / CACHE_FILE
    cached = _read_cache(cache_path)
    entries: dict[str, Any] = {}
    found: list[tuple[tuple[str, int], Listed | BrokenContext]] = []
    for entry in os.scandir(store.root) if store.root.is_dir() else ():
        match = CLIENT_ID.match(entry.name)
        if not match:
            continue
        order = (match["template"], int(match["version"]))
        stamp = None if entry.is_symlink() else _stamp(entry.path)
        if stamp is None and not entry.is_symlink() and not os.path.lexists(f"{entry.path}/{CONTEXT_FILE}"):
            continue  # a folder being created, or not a context
        hit = cached.get(entry.name)
        if stamp is not None and hit and hit.get("stamp") == stamp:
            try:
                found.append((order, Listed.from_json(entry.path, hit["row"])))
                entries[entry.name] = hit
                continue
            except (KeyError, TypeError, ValueError, RecordError):
                pass  # a damaged cache entry: read the context itself
        try:
            listed = Listed.of(store.load(entry.name))
        except ConfigError as err:
            found.append((order, BrokenContext(entry.name, Path(entry.path), str(err))))
            continue
        found.append((order, listed))
        if stamp is not None:
            entries[entry.name] = {"stamp": stamp, "row": listed.to_json()}
    if entries != cached:
        try:
            write_atomic(cache_path, json.dumps({"schema": CACHE_SCHEMA, "entries": entries}).encode("utf-8"))
        except OSError:
            pass  # a read-only contexts folder still lists, just without the cache
    return [item for _, item in sorted(found, key=lambda pair: pair[0])]
