"""Foreign text made safe to print or write: control characters shown as escapes, never sent raw.

A Lambda's error, a log tail or a purpose may hold ESC, OSC and CSI sequences, BEL, C1 controls or bidirectional
overrides: raw, they retitle or clear a terminal, hide text in a Markdown or log file, and make XML not well-formed.
Every line the toolkit prints, and every report and log it writes, goes through visible().
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls, line/paragraph separators, bidirectional controls, surrogates, XML's non-characters.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")
LAYOUT = "\n\t"  # kept where layout needs them


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    # \xHH below 0x20 (JSON output never holds those raw); \uHHHH above, which stays valid inside a JSON string.
    return f"\\x{code:02x}" if code < 0x20 else f"\\u{code:04x}"


def visible(text: str, keep: str = LAYOUT) -> str:
    """text with every control character but those in keep written as an escape (ESC as \\x1b)."""
    return UNSAFE.sub(lambda m: m[0] if m[0] in keep else _escape(m), text)
