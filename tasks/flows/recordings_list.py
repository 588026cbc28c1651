"""`make recordings`: every recording of the recordings folder, how old it is, and how often the last run used it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tasks.local.matching import load_matching
from tasks.local.recordings import RecordingError, read_recording
from tasks.settings import Settings

RECORDINGS_USED = "recordings.json"  # in a local run's folder: which recordings answered, which requests missed


@dataclass(frozen=True)
class RecordingRow:
    """One recording file as listed."""

    path: str  # relative to the recordings folder
    service: str
    target: str
    recorded_at: str | None
    hits: int | None  # in the last local run that used recordings; None when no run says
    state: str  # "ok", "to fill in" (a miss written for a person to complete), or "broken: why"


@dataclass(frozen=True)
class RecordingsListing:
    folder: Path
    matching: str  # where the matching rules came from
    last_run: Path | None  # the run folder the hits come from
    rows: tuple[RecordingRow, ...]


def last_run_hits(contexts_dir: Path) -> tuple[Path | None, dict[str, int]]:
    """The newest local run folder that recorded which recordings it used, and those hits."""
    found = sorted(contexts_dir.glob(f"*/runs/*/{RECORDINGS_USED}"), key=lambda p: p.stat().st_mtime)
    for path in reversed(found):
        try:
            hits = json.loads(path.read_text(encoding="utf-8"))["hits"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(hits, dict):
            return path.parent, {str(k): int(v) for k, v in hits.items() if isinstance(v, int)}
    return None, {}


def list_recordings(settings: Settings) -> RecordingsListing:
    folder = settings.local_recordings
    matching = load_matching(folder)
    run, hits = last_run_hits(settings.contexts_dir)
    rows = []
    for path in sorted(folder.glob("*/*/*.json")):
        relative = path.relative_to(folder).as_posix()
        try:
            document = read_recording(path)
        except RecordingError as err:
            rows.append(RecordingRow(relative, path.parts[-3], "-", None, hits.get(relative), f"broken: {err}"))
            continue
        request, response = document.get("request") or {}, document.get("response") or {}
        filled = response.get("status") is not None and response.get("body") is not None
        rows.append(
            RecordingRow(
                relative,
                str(document.get("service") or path.parts[-3]),
                f"{request.get('method', '?')} {request.get('target', '?')}",
                document.get("recorded_at"),
                hits.get(relative, 0) if run is not None else None,
                "ok" if filled else "to fill in",
            )
        )
    return RecordingsListing(folder, matching.source, run, tuple(rows))


def age(recorded_at: str | None, now: datetime) -> str:
    """How long ago, e.g. "3 d", "5 h"; "-" when unknown."""
    try:
        then = datetime.strptime(str(recorded_at), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "-"
    seconds = max(0, (now - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"
