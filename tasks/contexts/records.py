"""The records context.json keeps: run summaries, uploads, promotions, rollbacks, pulls, one record per target.

Frozen dataclasses, read with from_json (which says what is wrong with a broken record) and written with to_json.
A target is an env on a given endpoint: `dev` is the real AWS dev, `dev@http://127.0.0.1:4566` an emulation of it. A
promotion or pass on an emulated endpoint is never counted as one on the real env.
"""

from __future__ import annotations

import functools
from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import Any, TypeVar

R = TypeVar("R")


class RecordError(ValueError):
    """A context.json record that is not what this version writes (the message says what is wrong)."""


def target_key(env: str, endpoint: str | None) -> str:
    """The key of an env's record: the env itself on AWS, `env@endpoint` on a custom (emulated) endpoint."""
    return env if env == "local" or not endpoint else f"{env}@{endpoint}"


def target_label(env: str, endpoint: str | None) -> str:
    """How a target is shown: the env, marked when it is an emulation on a custom endpoint."""
    return env if env == "local" or not endpoint else f"{env}(emulated)"


def _check(kind: type, where: str, data: Any) -> dict[str, Any]:
    """data as the keyword arguments of kind, each field present with a value of a plausible type."""
    if not isinstance(data, dict):
        raise RecordError(f"{where} should be an object, not {type(data).__name__}")
    known, required = _fields(kind)
    values = {k: v for k, v in data.items() if k in known}
    for name in required:
        if name not in values:
            raise RecordError(f"{where} lacks the key {name!r}")
    return values


@functools.cache
def _fields(kind: type) -> tuple[frozenset[str], tuple[str, ...]]:
    """A record kind's field names, and those without a default (computed once: listing reads thousands)."""
    specs = fields(kind)
    required = tuple(f.name for f in specs if f.default is MISSING and f.default_factory is MISSING)
    return frozenset(f.name for f in specs), required


def _text(where: str, data: dict[str, Any], *names: str) -> None:
    for name in names:
        if not isinstance(data.get(name), str):
            raise RecordError(f"{where}.{name} should be a string")


def _parse(kind: type[R], data: Any, where: str, *texts: str) -> R:
    """A flat record of kind from data: every field present, the named ones strings."""
    values = _check(kind, where, data)
    _text(where, values, *texts)
    return kind(**values)


@dataclass(frozen=True)
class RunSummary:
    """What listing a context needs of one run, so it never reads run.json (issue: 10,000 contexts in 0.5 s)."""

    run_id: str
    env: str
    status: str
    started_at: str
    finished_at: str | None = None
    endpoint: str | None = None
    config_sha256: str | None = None  # the bytes this run actually tested (uploaded)
    total_seconds: float | None = None
    cost_usd: float | None = None
    checks_held: int = 0
    checks_total: int = 0
    warnings: int = 0
    failed_checks: tuple[str, ...] = ()
    exit_code: int | None = None

    @property
    def target(self) -> str:
        return target_key(self.env, self.endpoint)

    @classmethod
    def from_json(cls, data: Any, where: str = "run") -> RunSummary:
        values = _check(cls, where, data)
        for name, value in values.items():  # exact types: a listing formats these (and True is no count)
            if type(value) not in SUMMARY_TYPES[name]:
                said = " or ".join(TYPE_NAMES.get(kind, kind.__name__) for kind in SUMMARY_TYPES[name])
                raise RecordError(f"{where}.{name} should be {said}")
        failed = values.get("failed_checks") or ()
        if not all(type(name) is str for name in failed):
            raise RecordError(f"{where}.failed_checks should be a list of strings")
        return cls(**{**values, "failed_checks": tuple(failed)})


NONE = type(None)
TYPE_NAMES = {str: "a string", NONE: "null", float: "a number", int: "an integer", list: "a list"}
# The types each field of a run summary may have in context.json (and the listing cache).
SUMMARY_TYPES: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("run_id", "env", "status", "started_at"), (str,)),
    **dict.fromkeys(("finished_at", "endpoint", "config_sha256"), (str, NONE)),
    **dict.fromkeys(("total_seconds", "cost_usd"), (float, int, NONE)),
    **dict.fromkeys(("checks_held", "checks_total", "warnings", "exit_code"), (int, NONE)),
    "failed_checks": (list, tuple, NONE),
}


@dataclass(frozen=True)
class Upload:
    """One upload of the context's config to an env's config bucket."""

    at: str
    uri: str
    sha256: str
    action: str
    version_id: str | None = None
    replaced: dict[str, Any] | None = None
    endpoint: str | None = None
    rolled_back_at: str | None = None
    forced: bool | None = None  # set when the upload was a promotion
    purpose: str | None = None

    @classmethod
    def from_json(cls, data: Any, where: str = "upload") -> Upload:
        return _parse(cls, data, where, "at", "uri", "sha256", "action")


@dataclass(frozen=True)
class Rollback:
    """A rollback: which upload it undid (by its time) and the config it restored (None: the key was deleted)."""

    at: str
    undid: str
    uri: str
    restored: str | None = None
    version_id: str | None = None

    @classmethod
    def from_json(cls, data: Any, where: str = "rollback") -> Rollback:
        return _parse(cls, data, where, "at", "undid", "uri")


@dataclass(frozen=True)
class Pull:
    """Where a pulled context's config came from: a client someone else promoted."""

    at: str
    env: str
    uri: str
    sha256: str
    endpoint: str | None = None
    version_id: str | None = None

    @classmethod
    def from_json(cls, data: Any, where: str = "pulled") -> Pull:
        return _parse(cls, data, where, "at", "env", "uri", "sha256")


@dataclass(frozen=True)
class TargetRecord:
    """Everything done with the context on one target (an env on an endpoint)."""

    env: str
    endpoint: str | None = None
    promotion: Upload | None = None
    uploads: tuple[Upload, ...] = ()
    rollbacks: tuple[Rollback, ...] = ()
    last_run: RunSummary | None = None
    pending: Upload | None = None  # an upload begun (recorded before its put) and not yet recorded as done

    def with_upload(self, upload: Upload) -> TargetRecord:
        """The record once upload is done: in the uploads when it changed the key, the promotion if it was one."""
        target = replace(self, pending=None)
        if upload.action != "unchanged":
            target = replace(target, uploads=(*target.uploads, upload))
        if upload.forced is not None:
            target = replace(target, promotion=upload)
        return target

    @property
    def key(self) -> str:
        return target_key(self.env, self.endpoint)

    @property
    def emulated(self) -> bool:
        """On a custom endpoint (make local-aws, moto, LocalStack): never a pass or a promotion on the real env."""
        return self.endpoint is not None

    def written(self) -> set[str]:
        """SHA-256 of every config this context put at its key here (uploads, and what rollbacks restored)."""
        return {u.sha256 for u in self.uploads} | {r.restored for r in self.rollbacks if r.restored}

    @classmethod
    def from_json(cls, data: Any, where: str) -> TargetRecord:
        values = _check(cls, where, data)
        _text(where, values, "env")
        promotion, pending = values.get("promotion"), values.get("pending")
        last = values.get("last_run")
        return cls(
            env=values["env"],
            endpoint=values.get("endpoint"),
            promotion=Upload.from_json(promotion, f"{where}.promotion") if promotion else None,
            uploads=tuple(Upload.from_json(u, f"{where}.uploads[]") for u in _list(values, "uploads", where)),
            rollbacks=tuple(Rollback.from_json(r, f"{where}.rollbacks[]") for r in _list(values, "rollbacks", where)),
            last_run=RunSummary.from_json(last, f"{where}.last_run") if last else None,
            pending=Upload.from_json(pending, f"{where}.pending") if pending else None,
        )


def _list(values: dict[str, Any], name: str, where: str) -> list[Any]:
    found = values.get(name) or []
    if not isinstance(found, list):
        raise RecordError(f"{where}.{name} should be a list")
    return found


def to_json(record: Any) -> Any:
    """A record as JSON data (dataclasses to objects, tuples to lists)."""
    return asdict(record)
