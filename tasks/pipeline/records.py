"""The records of a run: an Invoke answer, an output found in S3, a step's result, and the whole run (run.json).

Frozen dataclasses, written to run.json as they are and read back with from_json. Pure.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from tasks.pipeline.checks import CheckResult

SCHEMA_VERSION = 2  # 2: checks, notes, expectations and each step's own event


@dataclass(frozen=True)
class Invocation:
    """One Invoke call's answer, as received."""

    function_name: str
    status_code: int
    function_error: str | None
    payload: Any
    log_tail: str
    request_id: str | None
    executed_version: str | None
    attempts: int = 1


@dataclass(frozen=True)
class OutputCheck:
    """One S3 object a step must have written, as found."""

    step: str
    uri: str
    size: int | None
    ok: bool
    last_modified: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class StepResult:
    """One invoked step: the answer's verdict and the figures of its REPORT line."""

    step: str
    function_name: str
    status: str
    started_at: str
    finished_at: str | None = None
    wall_ms: float | None = None
    duration_ms: float | None = None
    billed_duration_ms: float | None = None
    init_duration_ms: float | None = None
    memory_size_mb: int | None = None
    max_memory_used_mb: int | None = None
    request_id: str | None = None
    function_error: str | None = None
    status_code: int | None = None
    body_status: str | None = None
    error: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    log_tail: str | None = None
    event: dict[str, Any] | None = None  # set when this step's event differs from the run's (target_date)


@dataclass(frozen=True)
class RunRecord:
    """Everything a run did, as written to run.json (keys with unknown values are null, never absent)."""

    run_id: str
    client_id: str
    env: str
    target: str
    endpoint: str | None
    status: str
    started_at: str
    finished_at: str | None
    config_sha256: str | None
    event: dict[str, Any]
    steps: tuple[StepResult, ...] = ()
    outputs: tuple[OutputCheck, ...] = ()
    error: str | None = None
    exit_code: int | None = None
    functions: dict[str, Any] = field(default_factory=dict)
    resumed_from: str | None = None
    region: str | None = None
    checks: tuple[CheckResult, ...] = ()
    expectations: str | None = None  # where the checks' thresholds came from
    notes: tuple[str, ...] = ()  # what a reader must know (a dry run, replayed sources...)
    stand_ins: tuple[str, ...] = ()  # what answered instead of a live service, for the verdict: "bedrock stubbed"
    schema_version: int = SCHEMA_VERSION

    @property
    def warnings(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.warned)

    @property
    def payload(self) -> str:
        """The event's fields beyond client_id (PAYLOAD) as compact JSON, e.g. {"period_days": 7}; "none" if none."""
        extra = {key: value for key, value in self.event.items() if key != "client_id"}
        return json.dumps(extra, sort_keys=True, ensure_ascii=False) if extra else "none"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> RunRecord:
        """Read a run.json back (keys this version does not know are ignored, missing ones take defaults)."""
        fields = {k: v for k, v in document.items() if k in cls.__dataclass_fields__}
        fields["steps"] = tuple(_known(StepResult, s) for s in document.get("steps") or ())
        fields["outputs"] = tuple(_known(OutputCheck, o) for o in document.get("outputs") or ())
        fields["checks"] = tuple(_known(CheckResult, c) for c in document.get("checks") or ())
        fields["notes"] = tuple(document.get("notes") or ())
        fields["stand_ins"] = tuple(document.get("stand_ins") or ())
        return cls(**fields)


def _known(kind: Any, document: dict[str, Any]) -> Any:
    return kind(**{k: v for k, v in document.items() if k in kind.__dataclass_fields__})


RUN_KEYS = ("run_id", "client_id", "env", "status", "started_at")


def run_problem(document: Any) -> str | None:
    """What makes a run.json's document not a run record, or None."""
    if not isinstance(document, dict) or not all(isinstance(document.get(k), str) for k in RUN_KEYS):
        return f"not a run record (needs string {', '.join(RUN_KEYS)})"
    parts = [document.get(key) or [] for key in ("steps", "outputs")]
    if not all(isinstance(part, list) and all(isinstance(item, dict) for item in part) for part in parts):
        return "its steps and outputs should be lists of objects"
    return None
