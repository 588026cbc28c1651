"""What listing a context shows, for every context, cached by the content of each context.json.

`make contexts` and `make report` show one line per context. Parsing 10,000 context.json files into records takes
about a second, so the lines' data is kept in `contexts/.listing.cache`. The cache is only an accelerator (it may be
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

CACHE_FILE = ".listing.cache"
CACHE_SCHEMA = 2  # 2: each row bound to its context.json's bytes by a SHA-256 digest (1: .listing.json, no digest)


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
        content = os.read(fd, info.st_size)  # a file changing meanwhile gets a new stamp: read again next time
    except OSError:
        return None
    finally:
        os.close(fd)
    return [info.st_ino, info.st_size, info.st_mtime_ns], content


def _digest(content: bytes, row: bytes) -> str:
    """What binds a cached row to the context.json it was read from."""
    return hashlib.sha256(content + b"\0" + row).hexdigest()


# The cache: a header line, then one line per context: `name inode size mtime digest<TAB>row`, the row as JSON (no
# tab or newline in it: JSON escapes them). Rows are parsed only when used, all at once.
HEADER = f"vectora-listing {CACHE_SCHEMA}\n".encode()


def _read_cache(path: Path) -> dict[str, tuple[list[int], str, bytes]]:
    """The cache's entries by context name: stamp, digest, row; empty when the cache is missing or not one."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    if not data.startswith(HEADER):
        return {}
    entries = {}
    for line in data[len(HEADER) :].split(b"\n"):
        meta, tab, row = line.partition(b"\t")
        parts = meta.decode("ascii", "replace").split(" ")
        if tab and len(parts) == 5 and all(p.isdigit() for p in parts[1:4]):
            entries[parts[0]] = ([int(p) for p in parts[1:4]], parts[4], row)
    return entries


def _write_cache(path: Path, entries: dict[str, tuple[list[int], str, bytes]]) -> None:
    lines = [f"{name} {' '.join(map(str, stamp))} {digest}\t".encode() + row for name, (stamp, digest, row) in entries.items()]
    try:
        write_atomic(path, HEADER + b"\n".join(lines) + b"\n")
    except OSError:
        pass  # a read-only contexts folder still lists, just without the cache


def _rows(folders: list[str], rows: list[bytes]) -> list[Listed | None]:
    """The cached rows (parsed at once), each checked: None for a damaged one."""
    try:
        parsed = json.loads(b"[" + b",".join(rows) + b"]")
    except ValueError:  # one damaged row spoils the batch: check each on its own
        parsed = [_loads(row) for row in rows]
    found: list[Listed | None] = []
    for folder, data in zip(folders, parsed, strict=True):
        try:
            listed = Listed.from_json(folder, data)
        except (TypeError, RecordError):
            listed = None
        found.append(listed if listed and listed.client_id == Path(folder).name else None)
    return found


def _loads(row: bytes) -> Any:
    try:
        return json.loads(row)
    except ValueError:
        return None


def listing(store: ContextStore) -> list[Listed | BrokenContext]:
    """Every context as a listing shows it (broken ones with their problem), by template then version."""
    cache_path = store.root / CACHE_FILE
    cached = _read_cache(cache_path)
    entries: dict[str, tuple[list[int], str, bytes]] = {}
    found: list[tuple[tuple[str, int], Listed | BrokenContext]] = []
    hits: list[tuple[tuple[str, int], str, bytes]] = []
    misses: list[tuple[tuple[str, int], str, tuple[list[int], bytes] | None]] = []
    for entry in os.scandir(store.root) if store.root.is_dir() else ():
        order = client_id_order(entry.name)
        if order is None:
            continue
        read = None if entry.is_symlink() else _read_context_file(entry.path)
        if read is None and not entry.is_symlink() and not os.path.lexists(f"{entry.path}/{CONTEXT_FILE}"):
            continue  # a folder being created, or not a context
        hit = cached.get(entry.name)
        if read is not None and hit and hit[0] == read[0] and hit[1] == _digest(read[1], hit[2]):
            hits.append((order, entry.path, hit[2]))
        else:
            misses.append((order, entry.path, read))
    for (order, folder, row), listed in zip(hits, _rows([h[1] for h in hits], [h[2] for h in hits]), strict=True):
        if listed is None:
            misses.append((order, folder, _read_context_file(folder)))
        else:
            found.append((order, listed))
            entries[listed.client_id] = cached[listed.client_id]
    for order, folder, read in misses:
        name = Path(folder).name
        try:
            listed = Listed.of(store.load(name))
        except ConfigError as err:
            found.append((order, BrokenContext(name, Path(folder), str(err))))
            continue
        found.append((order, listed))
        if read is not None:
            row = json.dumps(listed.to_json(), ensure_ascii=False).encode("utf-8")
            entries[name] = (read[0], _digest(read[1], row), row)
    if entries != cached:
        _write_cache(cache_path, entries)
    return [item for _, item in sorted(found, key=lambda pair: pair[0])]
