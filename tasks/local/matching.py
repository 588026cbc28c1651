"""What identifies a recorded request: a matching config a team reads, changes and commits with its recordings.

`<recordings>/matching.yaml` says, per service (`bedrock`, `http`, any AWS signing name, `*` for the rest), which
parts of a request count and which normalizers rewrite them first, so that a prompt holding today's date, a URL with a
timestamp or a body with a request id still finds the answer recorded on another day. Without the file the defaults
below hold (and the first recording writes them there, to be committed). A request's *matching form* is the text
those rules make of it; its SHA-256 names the recording's file.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from tasks.errors import ConfigError

FILE_NAME = "matching.yaml"
PARTS = ("method", "host", "path", "query", "body")
NORMALIZERS: dict[str, tuple[re.Pattern[str], str]] = {
    "iso_dates": (
        re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"),
        "<date>",
    ),
    "slash_dates": (re.compile(r"\b\d{4}/\d{2}/\d{2}\b"), "<date>"),
    "written_dates": (
        re.compile(
            r"\b(?:\d{1,2} )?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?(?: \d{1,2},?)? \d{4}\b"
        ),
        "<date>",
    ),
    "timestamps": (re.compile(r"\b1\d{9}(?:\d{3})?(?:\.\d+)?\b"), "<timestamp>"),
    "uuids": (re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b"), "<uuid>"),
    "request_ids": (re.compile(r"\b[0-9a-fA-F]{32,}\b"), "<id>"),
}
DEFAULT_TEXT = """\
# What identifies a recorded request, per service ("*": every service not named). Commit it with the recordings.
#   match:         the parts that count, of: method, host, path, query, body
#   ignore_query:  query parameters left out
#   ignore_fields: JSON body fields left out, as dotted paths ("*" for any key or list index), e.g. metadata.sent_at
#   normalize:     rewrites applied to what counts before matching, of: iso_dates (2026-12-07, 2026-12-07T10:00:00Z),
#                  slash_dates (2026/12/07), written_dates (7 December 2026, Dec 7, 2026), timestamps (epoch
#                  seconds or ms), uuids, request_ids (32+ hex digits)
#   patterns:      your own rewrites, e.g. [{regex: "week \\\\d+", replace: "week <n>"}]
# A recording's file name is the SHA-256 of the request's matching form (shown in each recording as "matched").
services:
  "*":
    match: [method, host, path, query, body]
    ignore_query: []
    ignore_fields: []
    normalize: [iso_dates, slash_dates, written_dates, timestamps, uuids, request_ids]
    patterns: []
"""
KEYS = ("match", "ignore_query", "ignore_fields", "normalize", "patterns")


@dataclass(frozen=True)
class ServiceMatching:
    """The rules for one service: the parts that count, what is left out, the rewrites."""

    match: tuple[str, ...]
    ignore_query: frozenset[str]
    ignore_fields: tuple[tuple[str, ...], ...]
    rewrites: tuple[tuple[re.Pattern[str], str], ...]

    def form(self, method: str, target: str, body: bytes) -> str:
        """The request's matching form: one line per part that counts, after the rewrites."""
        parts = urlsplit(target)
        query = sorted(parse_qsl(parts.query, keep_blank_values=True))
        values = {
            "method": method.upper(),
            "host": (parts.hostname or "").lower(),
            "path": parts.path,
            "query": "&".join(f"{k}={v}" for k, v in query if k not in self.ignore_query),
            "body": self._body(body),
        }
        text = "\n".join(f"{part}: {values[part]}" for part in self.match)
        for pattern, replacement in self.rewrites:
            text = pattern.sub(replacement, text)
        return text

    def _body(self, body: bytes) -> str:
        try:
            document = json.loads(body)
        except ValueError:
            return body.decode("utf-8", "replace")
        for field in self.ignore_fields:
            document = _without(document, field)
        return json.dumps(document, sort_keys=True, ensure_ascii=False, indent=1)


def _without(document: Any, field: tuple[str, ...]) -> Any:
    """document without the field at the dotted path ("*": any key or index)."""
    if not field:
        return document
    head, rest = field[0], field[1:]
    if isinstance(document, dict):
        if not rest:
            return {k: v for k, v in document.items() if not (head == "*" or k == head)}
        return {k: _without(v, rest) if head in ("*", k) else v for k, v in document.items()}
    if isinstance(document, list) and (head == "*" or head.isdigit()):
        return [_without(v, rest) if head in ("*", str(i)) else v for i, v in enumerate(document)]
    return document


@dataclass(frozen=True)
class Matching:
    """The matching rules of a recordings folder: its matching.yaml over the defaults."""

    services: dict[str, ServiceMatching]
    source: str  # the file the rules came from, or "defaults"

    def for_service(self, service: str) -> ServiceMatching:
        return self.services.get(service) or self.services["*"]

    def write_defaults(self, folder: Path) -> None:
        """Write the default rules as folder's matching.yaml when it has none (the team commits it)."""
        path = folder / FILE_NAME
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(DEFAULT_TEXT, encoding="utf-8")


@functools.cache
def _defaults() -> dict[str, Any]:
    return dict(yaml.safe_load(DEFAULT_TEXT)["services"])


def load_matching(folder: Path) -> Matching:
    """The rules in folder/matching.yaml over the defaults; a file that does not parse is an error naming it."""
    path = folder / FILE_NAME
    defaults = _defaults()
    if not path.is_file():
        return Matching({name: _rules(path, name, rules) for name, rules in defaults.items()}, "defaults")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: not readable YAML ({err}): fix it, or delete it for the defaults") from err
    if not isinstance(document, dict) or not isinstance(document.get("services", {}), dict):
        raise ConfigError(f"{path}: expected `services:` mapping each service to its rules (see README, Recordings)")
    given = document.get("services") or {}
    base = defaults["*"] | (given.get("*") or {})
    services = {"*": _rules(path, "*", base)}
    for name, rules in given.items():
        if name != "*":
            services[str(name)] = _rules(path, str(name), base | (rules or {}))
    return Matching(services, str(path))


def _rules(path: Path, service: str, rules: Any) -> ServiceMatching:
    where = f"{path}: services.{service}"
    if not isinstance(rules, dict):
        raise ConfigError(f"{where}: expected a mapping of {', '.join(KEYS)}")
    unknown = sorted(set(rules) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}: use {', '.join(KEYS)}")
    lists = {key: rules.get(key) or [] for key in KEYS}
    for key, value in lists.items():
        if not isinstance(value, list):
            raise ConfigError(f"{where}.{key}: expected a list")
    bad_parts = [p for p in lists["match"] if p not in PARTS]
    if bad_parts or not lists["match"]:
        raise ConfigError(f"{where}.match: {bad_parts[:1] or 'empty'}: use some of {', '.join(PARTS)}")
    bad_normalizers = [n for n in lists["normalize"] if n not in NORMALIZERS]
    if bad_normalizers:
        raise ConfigError(f"{where}.normalize: unknown {bad_normalizers[0]!r}: use {', '.join(NORMALIZERS)}")
    rewrites = [NORMALIZERS[name] for name in lists["normalize"]]
    for pattern in lists["patterns"]:
        if not isinstance(pattern, dict) or set(pattern) != {"regex", "replace"}:
            raise ConfigError(f"{where}.patterns: each one is {{regex: ..., replace: ...}}")
        try:
            rewrites.append((re.compile(str(pattern["regex"])), str(pattern["replace"])))
        except re.error as err:
            message = f"{where}.patterns: {pattern['regex']!r:.60} is not a regular expression ({err})"
            raise ConfigError(message) from err
    return ServiceMatching(
        match=tuple(lists["match"]),
        ignore_query=frozenset(map(str, lists["ignore_query"])),
        ignore_fields=tuple(tuple(str(f).split(".")) for f in lists["ignore_fields"]),
        rewrites=tuple(rewrites),
    )
