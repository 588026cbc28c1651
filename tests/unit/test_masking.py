"""Foreign text made safe: secrets masked in every form (raw, escaped, URL-encoded, base64, numbers), control
characters shown as escapes, JSON bounded and strict. Pure."""

from __future__ import annotations

import base64
import io
import json
from urllib.parse import quote, quote_plus

import pytest

from tasks.json_documents import TooDeep, json_bytes, parse_json
from tasks.masking import MASK, RedactingStream, mask, redact, secret_forms
from tasks.visible import visible

SECRET = "s3cr3t/value+é"


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        json.dumps(SECRET)[1:-1],
        quote(SECRET),
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
    ],
)
def test_every_form_of_a_secret_is_masked(form: str) -> None:
    assert redact(f"before {form} after", secret_forms([SECRET])) == f"before {MASK} after"


@pytest.mark.parametrize("prefix", [b"", b"u", b"us", b"user:"])
def test_a_secret_inside_a_base64_blob_is_masked_at_any_alignment(prefix: bytes) -> None:
    blob = base64.b64encode(prefix + SECRET.encode() + b"-and-more").decode()
    masked = redact(blob, secret_forms([SECRET]))
    assert MASK in masked and len(masked) < len(blob) - 10


def test_a_number_that_is_a_secret_is_masked_and_other_values_kept() -> None:
    forms = secret_forms(["90817263"])
    assert mask({"pin": 90817263, "big": 90817263.0, "ok": 3, "flag": True, "x": 1.5}, forms) == {
        "pin": MASK,
        "big": MASK,
        "ok": 3,
        "flag": True,
        "x": 1.5,
    }


def test_control_characters_are_shown_as_escapes_and_layout_is_kept() -> None:
    text = "a\x1b[2J\x1b]0;t\x07 \x9b1m \x00 \x7f \u202e \ud800\tb\nc\r"
    assert visible(text) == "a\\x1b[2J\\x1b]0;t\\x07 \\u009b1m \\x00 \\u007f \\u202e \\ud800\tb\nc\\x0d"
    assert visible("tab\there", keep="") == "tab\\x09here"
    assert visible("plain é ✅ text") == "plain é ✅ text"


def test_what_is_printed_is_masked_and_escaped() -> None:
    out = io.StringIO()
    RedactingStream(out, ("token-value-1",)).write("\x1b]0;token-value-1\x07\n")
    assert out.getvalue() == "\\x1b]0;***\\x07\n"


def test_json_is_bounded_strict_and_written_for_strict_readers() -> None:
    with pytest.raises(TooDeep):
        parse_json("[" * 30_000 + "]" * 30_000)
    with pytest.raises(TooDeep):
        parse_json("[" * 101 + "]" * 101)
    with pytest.raises(ValueError, match="1e999 is too large"):
        parse_json('{"a": 1e999}')
    assert parse_json('{"a": 1e999, "b": NaN}', allow_nan=True)["a"] == float("inf")
    document = {"a": float("inf"), "b": [float("-inf"), float("nan")], "c": "\x9b\ud800"}
    written = json_bytes(document)
    assert json.loads(written, parse_constant=lambda c: pytest.fail(c)) == {
        "a": "Infinity",
        "b": ["-Infinity", "NaN"],
        "c": "\x9b\ud800",
    }
    assert b"\\u009b" in written
