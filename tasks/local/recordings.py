"""Recorded answers of the real services, in a folder a team commits, so a local run can replay them offline.

One JSON file per distinct request: `<folder>/<service>/<label>/<key>.json`, where label names what was asked (a model
id, a web host) and key is the first 20 hex digits of the SHA-256 of the request's *matching form*: the parts that
identify it (matching.py: method, target, body, per service), after the matching config's normalizers (dates,
timestamps, uuids...). So a prompt that holds today's date replays tomorrow. The file (schema in README, "Recordings")
holds the request as sent (for a reviewer), its matching form, when it was recorded, and the answer's status, content
type and body; never a header, and no credential: secret-looking query parameters and JSON fields are redacted, and
their values masked in the answer too, before anything is written. A replay miss is written as a ready-to-fill
recording (`status` and `body` null) for a person to complete and commit.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tasks.contexts.files import write_json
from tasks.local.matching import Matching, ServiceMatching

SCHEMA = 1
REDACTED = "REDACTED"
SECRET_QUERY = re.compile(
    r"(?i)^(api[_-]?key|apikey|key|access[_-]?token|token|secret|client[_-]?secret|password|passwd|pwd|auth|"
    r"signature|sig|x-amz-signature|x-amz-credential|x-amz-security-token|session[_-]?token|code)$"
)
SECRET_FIELD = re.compile(
    r"(?i)^(api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|id[_-]?token|token|secret|client[_-]?secret|"
    r"password|passwd|authorization|session[_-]?token|private[_-]?key|credentials?)$"
)
CONTENT_TYPE = re.compile(r"[\w!#$&^.+-]+/[\w!#$&^.+-]+(\s*;\s*[\w.-]+=(\"[^\"\r\n]*\"|[\w.+-]+))*")
MIN_ECHOED_SECRET = 6


class RecordingError(Exception):
    """A recording that cannot be used (not JSON, a header that would inject others...): named, never guessed."""


@dataclass(frozen=True)
class Exchange:
    """An answer as it crosses the embedded server: status, headers and body."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Request:
    """A request as a recording keeps it: service, label, method, target (path and query, or the URL) and body."""

    service: str
    label: str
    method: str
    target: str
    body: bytes


@dataclass(frozen=True)
class Miss:
    """A request replay had no recording for: what it was, the closest recording and what differed."""

    request: Request
    matched: str  # its matching form
    closest: Path | None
    difference: str  # the first lines that differ from the closest recording's matching form ("" if none)
    pending: Path  # the ready-to-fill recording written for it


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _readable(body: bytes) -> Any:
    """A body as JSON when it is JSON, else as text when it is UTF-8, else as base64."""
    document = _json_or_none(body)
    if document is not None:
        return {"json": document}
    try:
        return {"text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode("ascii")}


def _bytes(stored: dict[str, Any]) -> bytes:
    if "json" in stored:
        return json.dumps(stored["json"]).encode()
    if "text" in stored:
        return str(stored["text"]).encode("utf-8")
    return base64.b64decode(stored["base64"])


def _redact_fields(document: Any, found: list[str]) -> Any:
    """document with the values of secret-looking fields replaced (found collects those values)."""
    if isinstance(document, dict):
        redacted = {}
        for key, value in document.items():
            if isinstance(key, str) and SECRET_FIELD.match(key) and isinstance(value, str | int) and value != "":
                found.append(str(value))
                redacted[key] = REDACTED
            else:
                redacted[key] = _redact_fields(value, found)
        return redacted
    if isinstance(document, list):
        return [_redact_fields(item, found) for item in document]
    return document


def redact_target(target: str, found: list[str]) -> str:
    """A path or URL with the values of secret-looking query parameters replaced (found collects them)."""
    parts = urlsplit(target)
    if not parts.query:
        return target
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if SECRET_QUERY.match(name) and value:
            found.append(value)
            value = REDACTED
        query.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(query, safe="/:")))


def redact_body(body: bytes, found: list[str]) -> bytes:
    document = _json_or_none(body)
    if document is None:
        return body
    redacted = _redact_fields(document, found)
    return body if redacted == document else json.dumps(redacted).encode()


def mask_echoes(body: bytes, secrets: list[str]) -> bytes:
    """An answer with any secret of its request (echoed back) replaced."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_ECHOED_SECRET}, key=len, reverse=True):
        body = body.replace(secret.encode(), REDACTED.encode())
    return body


def redacted(request: Request, authorization: str | None = None) -> tuple[Request, list[str]]:
    """The request as it may be written and matched (no credential), and the secret values taken out of it."""
    found: list[str] = []
    if authorization:
        found += [authorization, authorization.split(" ", 1)[-1]]
    target = redact_target(request.target, found)
    body = redact_body(request.body, found)
    return Request(request.service, request.label, request.method, target, body), found


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")[:100] or "_"


def first_difference(expected: str, got: str, lines: int = 4) -> str:
    """The first lines where got differs from expected, as a short unified diff."""
    diff = difflib.unified_diff(expected.splitlines(), got.splitlines(), "recorded", "requested", n=0, lineterm="")
    kept = [line for line in diff if not line.startswith(("---", "+++", "@@"))][:lines]
    return "; ".join(line[:160] for line in kept)


class RecordingStore:
    """Recordings under folder, matched by its matching config: find one for a request, save one, list them."""

    def __init__(self, folder: Path, matching: Matching) -> None:
        self.folder = folder
        self.matching = matching

    def rules(self, service: str) -> ServiceMatching:
        return self.matching.for_service(service)

    def key(self, request: Request) -> tuple[str, str]:
        """The request's matching form and its key (redact it first)."""
        form = self.rules(request.service).form(request.method, request.target, request.body)
        return form, hashlib.sha256(form.encode()).hexdigest()[:20]

    def path(self, request: Request, key: str | None = None) -> Path:
        """Where the recording of this (redacted) request lives, whether or not it exists (key: if known)."""
        return self.folder / request.service / slug(request.label) / f"{key or self.key(request)[1]}.json"

    def load(self, path: Path) -> Exchange | None:
        """The answer recorded at path; None when there is none or it is still to be filled in."""
        if not path.is_file():
            return None
        answer = read_recording(path).get("response")
        if not isinstance(answer, dict) or answer.get("status") is None or answer.get("body") is None:
            return None
        return _exchange(path, answer)

    def save(self, request: Request, exchange: Exchange, secrets: list[str], now: datetime) -> Path:
        """Record the answer to a redacted request (secrets: its values taken out, masked in the answer too)."""
        content_type = next((v for k, v in exchange.headers.items() if k.lower() == "content-type"), "")
        body = redact_body(mask_echoes(exchange.body, secrets), [])  # an answer's own tokens too
        response = {"status": exchange.status, "content_type": content_type, "body": _readable(body)}
        return self._write(request, response, now)

    def save_pending(self, request: Request, now: datetime) -> Path:
        """A ready-to-fill recording for a request replay missed (kept if one is already waiting)."""
        path = self.path(request)
        if not path.exists():
            self._write(request, {"status": None, "content_type": "application/json", "body": None}, now)
        return path

    def closest(self, request: Request) -> tuple[Path | None, str]:
        """The recording of the same service and label whose matching form is nearest this request's, and the
        first lines that differ."""
        form = self.key(request)[0]
        best: tuple[float, Path, str] | None = None
        for path in sorted((self.folder / request.service / slug(request.label)).glob("*.json"))[:200]:
            try:
                recorded = str(read_recording(path).get("request", {}).get("matched", ""))
            except RecordingError:
                continue
            if recorded == form:
                continue
            ratio = difflib.SequenceMatcher(None, recorded[:4000], form[:4000], autojunk=False).quick_ratio()
            if best is None or ratio > best[0]:
                best = (ratio, path, recorded)
        if best is None:
            return None, ""
        return best[1], first_difference(best[2], form)

    def _write(self, request: Request, response: dict[str, Any], now: datetime) -> Path:
        form, key = self.key(request)  # the matching form once: it is the key and is kept in the file
        document = {
            "schema": SCHEMA,
            "service": request.service,
            "key": key,
            "recorded_at": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "request": {
                "method": request.method.upper(),
                "target": request.target,
                "body": _readable(request.body) if request.body else None,
                "matched": form,
            },
            "response": response,
        }
        path = self.path(request, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, document)
        self.matching.write_defaults(self.folder)  # the team commits what identified its requests
        return path


def read_recording(path: Path) -> dict[str, Any]:
    """A recording file's document; RecordingError naming the file when it is not a JSON object."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise RecordingError(f"recording {path} cannot be read as JSON ({err}): fix it or delete it") from err
    if not isinstance(document, dict):
        raise RecordingError(f"recording {path} is not a JSON object: fix it or delete it")
    return document


def _exchange(path: Path, answer: dict[str, Any]) -> Exchange:
    status, content_type, body = answer.get("status"), answer.get("content_type") or "", answer.get("body")
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise RecordingError(f"recording {path}: response.status must be an HTTP status (100-599), not {status!r:.40}")
    if not isinstance(content_type, str) or not CONTENT_TYPE.fullmatch(content_type):
        raise RecordingError(f"recording {path}: response.content_type {content_type!r:.60} is not a media type")
    if not isinstance(body, dict) or len(body) != 1 or next(iter(body)) not in ("json", "text", "base64"):
        raise RecordingError(f"recording {path}: response.body must be one of {{json|text|base64: ...}}")
    try:
        data = _bytes(body)
    except (ValueError, TypeError) as err:
        raise RecordingError(f"recording {path}: response.body cannot be decoded ({err})") from err
    return Exchange(status, {"Content-Type": content_type}, data)
