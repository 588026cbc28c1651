"""Pure helpers for Lambda logs: decode an Invoke log tail and parse its REPORT line."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_FIELDS = {
    "duration_ms": r"\bDuration: ([\d.]+) ms",
    "billed_duration_ms": r"Billed Duration: ([\d.]+) ms",
    "memory_size_mb": r"Memory Size: (\d+) MB",
    "max_memory_used_mb": r"Max Memory Used: (\d+) MB",
    "init_duration_ms": r"Init Duration: ([\d.]+) ms",
}


@dataclass(frozen=True)
class LambdaReport:
    """The figures of a REPORT line; None where the line does not give one."""

    duration_ms: float | None = None
    billed_duration_ms: float | None = None
    memory_size_mb: int | None = None
    max_memory_used_mb: int | None = None
    init_duration_ms: float | None = None


LOG_TAIL_BYTES = 4096  # what Lambda returns of the log with LogType=Tail


def decode_log_tail(log_result: str | None) -> str:
    """The text of an Invoke answer's LogResult (base64), or '' when absent or garbled.

    Lambda sends the last 4 KB of the log: when it was cut, the first line is a fragment (which could hold part of a
    secret that masking cannot recognize), so the tail starts at the first whole line.
    """
    if not log_result:
        return ""
    try:
        raw = base64.b64decode(log_result)
    except (binascii.Error, ValueError):
        return ""
    if len(raw) >= LOG_TAIL_BYTES:
        raw = raw.partition(b"\n")[2]
    return raw.decode("utf-8", "replace")


def parse_report(log: str) -> LambdaReport:
    """Parse the last REPORT line of a Lambda log."""
    lines = [line for line in log.splitlines() if line.startswith("REPORT ")]
    if not lines:
        return LambdaReport()
    values: dict[str, float | int] = {}
    for name, pattern in _FIELDS.items():
        match = re.search(pattern, lines[-1])
        if match:
            values[name] = int(match[1]) if name.endswith("_mb") else float(match[1])
    return LambdaReport(**values)  # type: ignore[arg-type]
