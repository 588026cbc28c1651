"""JSON read from foreign bytes and written for strict readers: bounded nesting, no NaN or Infinity. Pure."""

from __future__ import annotations

import json
import math
from typing import Any

from tasks.visible import visible

MAX_DEPTH = 100  # deeper documents are refused: every walk over a record (masking, copying, writing) stays bounded
NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


class TooDeep(ValueError):
    """A JSON document nested deeper than MAX_DEPTH."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed: strict JSON parsers reject it")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is too large for a number: JSON readers make it Infinity")
    return number


def _deeper_than(document: Any, limit: int) -> bool:
    pending = [(document, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            pending += [(child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)]
    return False


def parse_json(text: str | bytes, allow_nan: bool = False) -> Any:
    """A JSON document, nested at most MAX_DEPTH deep (else TooDeep, a ValueError, never a RecursionError);
    NaN, Infinity and numbers too large for a float (1e999) refused unless allow_nan (a Lambda's answer may hold
    them: json_safe writes them as strings)."""
    try:
        document = json.loads(text) if allow_nan else json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError as err:
        raise TooDeep(f"nested too deeply (more than {MAX_DEPTH} levels)") from err
    if _deeper_than(document, MAX_DEPTH):
        raise TooDeep(f"nested too deeply (more than {MAX_DEPTH} levels)")
    return document


def json_safe(document: Any, where: str = "", found: list[str] | None = None) -> Any:
    """document with each number JSON cannot hold (NaN, the infinities an answer's 1e999 becomes) as a string;
    found collects where each one was (e.g. steps[0].payload.score)."""
    if isinstance(document, float) and not math.isfinite(document):
        if found is not None:
            found.append(where or "the document")
        return NON_FINITE.get(document, "NaN")
    if isinstance(document, dict):
        return {key: json_safe(value, f"{where}.{key}".lstrip("."), found) for key, value in document.items()}
    if isinstance(document, list | tuple):
        return [json_safe(item, f"{where}[{index}]", found) for index, item in enumerate(document)]
    return document


def json_bytes(document: Any) -> bytes:
    """document as indented UTF-8 JSON that any strict parser reads: no NaN or Infinity (written as strings); the
    controls json leaves raw (DEL, C1, bidirectional overrides) and lone surrogates (a Lambda's "\\ud800") written as
    \\u escapes, which read back as the same text and reach no terminal that shows the file."""
    text = json.dumps(json_safe(document), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return visible(text).encode("utf-8")
