"""Keep secrets out of what the toolkit writes and prints: find them by variable name, mask their values."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import TextIO

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


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class RedactingStream:
    """A text stream that masks secrets in everything written to it."""

    def __init__(self, stream: TextIO, secrets: tuple[str, ...]) -> None:
        self._stream = stream
        self._secrets = secrets

    def write(self, text: str) -> int:
        return self._stream.write(redact(text, self._secrets))

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)
