"""Bedrock stub answers from rules a team writes, so a real pipeline's parser gets well-formed answers offline.

A YAML file (LOCAL_BEDROCK_STUB_RULES) holds `rules:`, tried in order; the first that matches answers:

    rules:
      - name: domain scoring                 # for messages and the run's notes
        model: "anthropic.claude-3-*"        # optional: a glob on the model id
        prompt_contains: "relevance score"   # optional: text the prompt (the last user message) holds
        prompt_regex: "Title: (?P<title>[^\\n]+)"   # optional: its named groups fill the answer's {placeholders}
        json: {score: 8, summary: "{title}", entities: {companies: ["{company}"]}}
      - name: editorial
        text: "An editorial for {first_sentence}"  # or plain text

Placeholders: the rule's named groups, `{first_sentence}` and `{last_paragraph}` of the prompt, `{model}`. A `json`
answer is sent as the message text, serialized. A prompt no rule matches is refused, naming the file.
"""

from __future__ import annotations

import fnmatch
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tasks.errors import ConfigError

BUILT_INS = frozenset({"first_sentence", "last_paragraph", "model"})
KEYS = frozenset({"name", "model", "prompt_contains", "prompt_regex", "json", "text"})
FIRST_SENTENCE = re.compile(r"(?<![A-Z])\.\s+(?=[A-Z])")


def last_paragraph(prompt: str) -> str:
    return prompt.strip().split("\n\n")[-1].strip()


def first_sentence(paragraph: str) -> str:
    return FIRST_SENTENCE.split(paragraph, maxsplit=1)[0].rstrip(".") + "." if paragraph else ""


class NoRule(ValueError):
    """No rule matches a prompt."""


@dataclass(frozen=True)
class StubRule:
    name: str
    model: str | None
    contains: str | None
    pattern: re.Pattern[str] | None
    answer: Any  # a JSON template, or a text template (str) when text is True
    text: bool

    def values(self, model: str, prompt: str) -> dict[str, str] | None:
        """The placeholder values when this rule matches model and prompt, else None."""
        if self.model is not None and not fnmatch.fnmatchcase(model, self.model):
            return None
        if self.contains is not None and self.contains not in prompt:
            return None
        groups: dict[str, str] = {}
        if self.pattern is not None:
            found = self.pattern.search(prompt)
            if found is None:
                return None
            groups = {k: v or "" for k, v in found.groupdict().items()}
        paragraph = last_paragraph(prompt)
        return {"first_sentence": first_sentence(paragraph), "last_paragraph": paragraph, "model": model, **groups}


@dataclass(frozen=True)
class StubRules:
    source: Path
    rules: tuple[StubRule, ...]

    def answer(self, model: str, prompt: str) -> tuple[str, str]:
        """The rule that answers and the answer's text; NoRule naming the file when none matches."""
        for rule in self.rules:
            values = rule.values(model, prompt)
            if values is not None:
                filled = _fill(rule.answer, values)
                return rule.name, filled if rule.text else json.dumps(filled, ensure_ascii=False)
        shown = " ".join(prompt.split())[:100]
        raise NoRule(f"no rule in {self.source} matches model {model!r} and the prompt {shown!r}")


def _fill(template: Any, values: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format_map(values)
    if isinstance(template, list):
        return [_fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: _fill(value, values) for key, value in template.items()}
    return template


def _placeholders(template: Any) -> set[str]:
    if isinstance(template, str):
        return {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(template) if field}
    if isinstance(template, list):
        return set().union(*map(_placeholders, template)) if template else set()
    if isinstance(template, dict):
        return set().union(*map(_placeholders, template.values())) if template else set()
    return set()


def load_stub_rules(path: Path) -> StubRules:
    """The rules in path, checked: every key known, one answer each, placeholders that will be filled."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"LOCAL_BEDROCK_STUB_RULES: {path}: not readable YAML ({err})") from err
    entries = document.get("rules") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"LOCAL_BEDROCK_STUB_RULES: {path}: expected `rules:`, a list of rules (see README)")
    return StubRules(path, tuple(_rule(path, i, entry) for i, entry in enumerate(entries, 1)))


def _rule(path: Path, number: int, entry: Any) -> StubRule:
    where = f"LOCAL_BEDROCK_STUB_RULES: {path}: rule {number}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = sorted(set(entry) - KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}: use {', '.join(sorted(KEYS))}")
    if ("json" in entry) == ("text" in entry):
        raise ConfigError(f"{where}: give exactly one answer, `json:` or `text:`")
    try:
        pattern = re.compile(str(entry["prompt_regex"])) if "prompt_regex" in entry else None
    except re.error as err:
        raise ConfigError(f"{where}: prompt_regex is not a regular expression ({err})") from err
    answer = entry.get("json", entry.get("text"))
    if "text" in entry and not isinstance(answer, str):
        raise ConfigError(f"{where}: text must be a string")
    known = BUILT_INS | set(pattern.groupindex if pattern else ())
    missing = sorted(_placeholders(answer) - known)
    if missing:
        raise ConfigError(
            f"{where}: placeholder {{{missing[0]}}} is neither a group of prompt_regex nor one of "
            f"{', '.join(sorted(BUILT_INS))}"
        )
    return StubRule(
        name=str(entry.get("name") or f"rule {number}"),
        model=str(entry["model"]) if "model" in entry else None,
        contains=str(entry["prompt_contains"]) if "prompt_contains" in entry else None,
        pattern=pattern,
        answer=answer,
        text="text" in entry,
    )
