"""Client configs: render a template's placeholders with a YAML emitter, check the keys the pipeline needs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tasks.errors import ConfigError, brief

# libyaml's safe loader when PyYAML was built with it (5-10x faster), else the pure-Python one: same results.
BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class AliasError(yaml.YAMLError):
    """A document that uses a YAML alias: a few hundred bytes of aliases can stand for billions of values."""

    def __init__(self, line: int) -> None:
        super().__init__(f"YAML aliases are refused (one refers to the node anchored at line {line}); write it out")
        self.line = line


class NoAliasLoader(BASE_LOADER):
    """The safe loader, refusing aliases: a node reached twice in the composed document is an alias (or a merge)."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _refuse_aliases(node)
        return self.construct_document(node)


def _refuse_aliases(root: yaml.Node) -> None:
    """Raise AliasError if any node of the composed document is reached twice (walked without recursion)."""
    seen: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen:
            raise AliasError(node.start_mark.line + 1)
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            pending.extend(part for pair in node.value for part in pair)
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
PLACEHOLDERS = ("CLIENT_ID", "NAME", "CONTEXT_ID", "PURPOSE", "ENVIRONMENT", "DATE", "PROMOTED_FROM")
# Dotted paths every client config must have, for the sample pipeline and the real one alike.
REQUIRED_KEYS = ("client_profile.client_id", "watch_domains", "newsletter_layout.sections")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_yaml(data: bytes | str, where: str | Path) -> dict[str, Any]:
    """Parse a YAML mapping, naming where it comes from (and the line) when it is not one."""
    try:
        document = yaml.load(data, Loader=NoAliasLoader)
    except AliasError as err:
        raise ConfigError(f"{where}:{err.line}: {err}") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else str(where)
        raise ConfigError(f"{at}: not valid YAML ({getattr(err, 'problem', err)})") from err
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: expected a YAML mapping at the top level")
    return document


def load_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML file holding a mapping, naming the file (and line) when it does not."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from err
    return parse_yaml(text, path)


def check_required_keys(document: Mapping[str, Any], path: str | Path) -> None:
    """Raise ConfigError naming the first required key that is missing."""
    for dotted in REQUIRED_KEYS:
        node: Any = document
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise ConfigError(f"{path}: missing required key {dotted!r}")
            node = node[part]


def check_config(data: bytes, where: str | Path, client_id: str) -> None:
    """A client config checked before use: valid YAML, the required keys, its own client_id."""
    document = parse_yaml(data, where)
    check_required_keys(document, where)
    found = document["client_profile"]["client_id"]
    if found != client_id:
        raise ConfigError(f"{where}: client_profile.client_id is {brief(found)}, expected {client_id!r}")


def read_config(path: Path, client_id: str) -> bytes:
    """A context's client config file's bytes, checked before use (check_config)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from err
    check_config(data, path, client_id)
    return data


def _fill(node: Any, values: Mapping[str, str], path: Path) -> Any:
    if isinstance(node, dict):
        return {key: _fill(value, values, path) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(item, values, path) for item in node]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(1) not in values:
                raise ConfigError(f"{path}: unknown placeholder {match.group(0)}; known: {', '.join(PLACEHOLDERS)}")
            return values[match.group(1)]

        return PLACEHOLDER.sub(replace, node)
    return node


def render_template(path: Path, values: Mapping[str, str]) -> bytes:
    """Fill the template's placeholders in the parsed tree and emit YAML: quotes and newlines stay data."""
    template = load_yaml(path)
    check_required_keys(template, path)
    rendered = _fill(template, values, path)
    header = (
        f"# Rendered from {path.name} by the Vectora Inbox E2E toolkit. Edit it here if you need to, then rerun\n"
        "# `make local-e2e CLIENT_ID=...`: promote uploads only the bytes a passed local run tested.\n"
    )
    body = yaml.safe_dump(rendered, sort_keys=False, allow_unicode=True, width=120)
    return (header + body).encode("utf-8")
