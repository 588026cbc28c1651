"""Recorded answers of the real services, in a folder a team commits, so a local run can replay them offline.

One JSON file per distinct request: `<folder>/<service>/<label>/<digest>.json`, where label names what was asked
(a model id, a web host) and digest is the SHA-256 of the method, the target and the body (a JSON body re-serialized
with sorted keys, so key order does not matter). The file holds the request (for a reviewer) and the answer's status,
content type and body; never a header that could carry a credential.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.contexts.files import write_json


@dataclass(frozen=True)
class Exchange:
    """An answer as it crosses the embedded server: status, headers and body."""

    status: int
    headers: dict[str, str]
    body: bytes


def _canonical_body(body: bytes) -> bytes:
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        return body


def _readable(body: bytes) -> Any:
    """A body as JSON when it is JSON, else as text when it is UTF-8, else as base64."""
    try:
        return {"json": json.loads(body)}
    except ValueError:
        pass
    try:
        return {"text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode("ascii")}


def _bytes(stored: dict[str, Any]) -> bytes:
    if "json" in stored:
        return json.dumps(stored["json"]).encode()
    if "text" in stored:
        return stored["text"].encode("utf-8")
    return base64.b64decode(stored["base64"])


class RecordingStore:
    """Recordings under folder: find one for a request, save one."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, service: str, label: str, method: str, target: str, body: bytes) -> Path:
        """Where the recording of this request lives (whether or not it exists)."""
        digest = hashlib.sha256(f"{method.upper()} {target}\n".encode() + _canonical_body(body)).hexdigest()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "_"
        return self.folder / service / slug / f"{digest[:20]}.json"

    def load(self, path: Path) -> Exchange | None:
        if not path.is_file():
            return None
        answer = json.loads(path.read_text(encoding="utf-8"))["response"]
        return Exchange(answer["status"], {"Content-Type": answer["content_type"]}, _bytes(answer["body"]))

    def save(self, path: Path, method: str, target: str, body: bytes, exchange: Exchange) -> None:
        content_type = next((v for k, v in exchange.headers.items() if k.lower() == "content-type"), "")
        document = {
            "request": {"method": method.upper(), "target": target, "body": _readable(body) if body else None},
            "response": {"status": exchange.status, "content_type": content_type, "body": _readable(exchange.body)},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, document)
