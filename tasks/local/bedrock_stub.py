"""A deterministic stand-in for Bedrock's InvokeModel with an Anthropic messages body, for offline tests.

It is not a model. Given a team's rules (stub_rules.py) it answers what the first matching rule says; without them it
answers with the first sentence of the last paragraph of the last user message (the sample pipeline puts the item's
text there, so the stub's "summary" is that text's first sentence), which fits the sample pipeline only. Same request,
same answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import unquote

from tasks.local.stub_rules import StubRules, first_sentence, last_paragraph

INVOKE_PATH = re.compile(r"^/model/(?P<model>[^/]+)/invoke$")


class StubError(ValueError):
    """A request the stub cannot answer (another operation, or not an Anthropic messages body)."""


def _last_user_text(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise StubError("the body has no user message (Anthropic messages format expected)")
    content = users[-1].get("content")
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def answer(path: str, body: bytes, rules: StubRules | None = None) -> dict[str, Any]:
    """The stub's answer to InvokeModel at path with body, in the Anthropic messages response format (from rules
    when given: NoRule when none matches)."""
    match = INVOKE_PATH.match(path)
    if not match:
        raise StubError(f"the Bedrock stub answers InvokeModel only, not {path}")
    try:
        request = json.loads(body)
    except ValueError as err:
        raise StubError("the body is not JSON") from err
    text = _last_user_text(request)
    model = unquote(match["model"])
    sentence = rules.answer(model, text)[1] if rules else first_sentence(last_paragraph(text))
    return {
        "id": "msg_stub_" + hashlib.sha256(body).hexdigest()[:16],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": sentence}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": len(text.split()), "output_tokens": len(sentence.split())},
    }
