"""What listing a context shows, for every context, cached by the content of each context.json.

`make contexts` and `make report` show one line per context. Parsing 10,000 context.json files into records takes
about a second, so the lines' data is kept in `contexts/.listing.json`. The cache is only an accelerator (it may be
deleted at any time) and never an authority: an entry is used only while its context.json has the same inode, size
and modification time and its bytes, with the entry's row, hash to the entry's digest, and while the row has the
types a listing needs. Anything else (a rewritten, broken or missing context.json, a damaged or edited row) is read
again from context.json. A row can only be forged by recomputing its digest, by someone who could as well edit the
context.json itself: the cache never says more than the context does.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tasks.contexts.files import write_atomic
from tasks.contexts.records import RecordError, RunSummary, target_label
from tasks.contexts.store import CONTEXT_FILE, BrokenContext, Context, ContextStore, client_id_order
from tasks.errors import ConfigError

CACHE_FILE = ".listing.json"
CACHE_SCHEMA = 2  # 2: each entry holds its row as text, bound to its context.json's bytes by a SHA-256 digest


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
        """The cached form: everything but the folder (the cache may move with the contexts folder)."""
        return {**asdict(self), "folder": None}

    @classmethod
    def from_json(cls, folder: str, data: Any) -> Listed:
        """A cached row, checked field by field: a damaged one raises RecordError."""
        if not isinstance(data, dict):
            raise RecordError("a cached row should be an object")
        texts = [data.get(k) for k in ("client_id", "status", "purpose")]
        promoted, statuses = data.get("promoted"), data.get("statuses")
        if not (
            all(isinstance(t, str) for t in texts)
            and isinstance(promoted, list)
            and all(isinstance(p, str) for p in promoted)
            and isinstance(statuses, dict)
            and all(isinstance(s, str) for s in statuses.values())
        ):
            raise RecordError("a cached row has a field of the wrong type")
        last = data.get("last_run")
        return cls(
            client_id=data["client_id"],
            folder=folder,
            status=data["status"],
            purpose=data["purpose"],
            promoted=tuple(promoted),
            statuses=dict(statuses),
            last_run=RunSummary.from_json(last, "last_run") if last is not None else None,
        )


def _read_context_file(folder: str) -> tuple[list[int], bytes] | None:
    """A context folder's context.json: its identity (inode, size, mtime) and bytes; None when not a plain file."""
    try:
        fd = os.open(f"{folder}/{CONTEXT_FILE}", os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None  # missing, or a symlink: the store names the problem
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or os.path.islink(f"{folder}/runs"):
            return None
        chunks = []
        while chunk := os.read(fd, max(info.st_size, 1) + 1):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return [info.st_ino, info.st_size, info.st_mtime_ns], b"".join(chunks)


def _digest(content: bytes, row: str) -> str:
    """What binds a cached row to the context.json it was read from."""
    return hashlib.sha256(content + b"\0" + row.encode("utf-8")).hexdigest()


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    ok = isinstance(document, dict) and document.get("schema") == CACHE_SCHEMA
    return document.get("entries", {}) if ok and isinstance(document.get("entries"), dict) else {}


def _cached(entry: Any, name: str, folder: str, stamp: list[int], content: bytes) -> Listed | None:
    """The row of a cache entry, if the entry still matches its context.json and the row is sound; else None."""
    if not isinstance(entry, dict) or entry.get("stamp") != stamp or not isinstance(entry.get("row"), str):
        return None
    if entry.get("digest") != _digest(content, entry["row"]):
        return None
    try:
        listed = Listed.from_json(folder, json.loads(entry["row"]))
    except (ValueError, TypeError):  # RecordError is a ValueError
        return None
    return listed if listed.client_id == name else None


def listing(store: ContextStore) -> list[Listed | BrokenContext]:
    """Every context as a listing shows it (broken ones with their problem), by template then version."""
    cache_path = store.root / CACHE_FILE
    cached = _read_cache(cache_path)
    entries: dict[str, Any] = {}
    found: list[tuple[tuple[str, int], Listed | BrokenContext]] = []
    for entry in os.scandir(store.root) if store.root.is_dir() else ():
        order = client_id_order(entry.name)
        if order is None:
            continue
        read = None if entry.is_symlink() else _read_context_file(entry.path)
        if read is None and not entry.is_symlink() and not os.path.lexists(f"{entry.path}/{CONTEXT_FILE}"):
            continue  # a folder being created, or not a context
        if read is not None:
            hit = _cached(cached.get(entry.name), entry.name, entry.path, *read)
            if hit is not None:
                found.append((order, hit))
                entries[entry.name] = cached[entry.name]
                continue
        try:
            listed = Listed.of(store.load(entry.name))
        except ConfigError as err:
            found.append((order, BrokenContext(entry.name, Path(entry.path), str(err))))
            continue
        found.append((order, listed))
        if read is not None:
            row = json.dumps(listed.to_json(), ensure_ascii=False)
            entries[entry.name] = {"stamp": read[0], "digest": _digest(read[1], row), "row": row}
    if entries != cached:
        try:
            write_atomic(cache_path, json.dumps({"schema": CACHE_SCHEMA, "entries": entries}).encode("utf-8"))
        except OSError:
            pass  # a read-only contexts folder still lists, just without the cache
    return [item for _, item in sorted(found, key=lambda pair: pair[0])]
