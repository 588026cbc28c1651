"""Keep secrets out of what the toolkit writes and prints: find them by variable name, mask their values."""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

from tasks.visible import visible

SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)
MIN_LENGTH = 8  # shorter values (dummy keys such as "local") would mask ordinary words
MASK = "***"


def secret_values(sources: Iterable[Mapping[str, str]], not_secret: Collection[str] = ()) -> tuple[str, ...]:
    """Values of variables whose name says KEY, SECRET, TOKEN or PASSWORD; longest first, so masks do not overlap."""
    found = {
        value
        for source in sources
        for name, value in source.items()
        if SECRET_NAME.search(name) and name not in not_secret and len(value or "") >= MIN_LENGTH
    }
    return tuple(sorted(found, key=len, reverse=True))


def _base64_forms(secret: str) -> Iterator[str]:
    """The base64 text (standard and URL-safe) that encodes the secret's bytes wherever they start in an encoded blob:
    at each of the three alignments, the characters that depend on the secret's bytes alone."""
    data = secret.encode("utf-8")
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            encoded = encode(bytes(offset) + data).decode("ascii")
            yield encoded[-(-8 * offset // 6) : 8 * (offset + len(data)) // 6]


def secret_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Each secret in every form text can hold it: raw, JSON-escaped (ASCII or not), URL-encoded, HTML/XML-escaped,
    base64 (alone or inside an encoded blob); longest first."""
    forms: set[str] = set()
    for secret in secrets:
        for text in (
            secret,
            json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
            quote(secret),
            quote(secret, safe=""),
            quote_plus(secret),
        ):
            forms |= {text, html.escape(text), html.escape(text, quote=False)}
        forms |= set(_base64_forms(secret))
    return tuple(sorted(forms, key=len, reverse=True))


def redact(text: str, forms: Iterable[str]) -> str:
    """text with every form of a secret masked (forms from secret_forms)."""
    for form in forms:
        text = text.replace(form, MASK)
    return text


def mask(document: Any, forms: tuple[str, ...]) -> Any:
    """document (dicts, lists, strings, numbers) with every string masked, and every number that holds a secret
    (a numeric secret: a PIN, an account id) replaced by the mask, before anything serializes it."""
    if isinstance(document, str):
        return redact(document, forms)
    if isinstance(document, int | float) and not isinstance(document, bool):
        return MASK if redact(str(document), forms) != str(document) else document
    if isinstance(document, dict):
        return {mask(key, forms): mask(value, forms) for key, value in document.items()}
    if isinstance(document, list | tuple):
        return [mask(item, forms) for item in document]
    return document


class RedactingStream:
    """A text stream that masks secrets in everything written to it, and shows control characters as escapes
    (tasks/visible.py): what the toolkit prints never holds a secret or a raw terminal escape."""

    def __init__(self, stream: TextIO, secrets: tuple[str, ...]) -> None:
        self._stream = stream
        self._secrets = secret_forms(secrets)

    def write(self, text: str) -> int:
        return self._stream.write(visible(redact(text, self._secrets)))

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)
