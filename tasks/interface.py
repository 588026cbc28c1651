"""Which interface started the toolkit (make, nox or python): hints use its syntax, and who prints the exit line.

The Makefile sets VECTORA_INTERFACE=make; the noxfile passes it on, or sets nox. Messages are written in make's
syntax (`make local-e2e CLIENT_ID=x`, FORCE=1) and translated here for a nox or python user.
"""

from __future__ import annotations

import os
import re
import sys

from tasks.errors import EXIT_MEANINGS

VARIABLE = "VECTORA_INTERFACE"
# A make target -> the command after `python -m tasks`; nox sessions carry the make targets' names.
COMMANDS = {
    "local-e2e": "local-e2e",
    "aws-e2e": "aws-e2e",
    "promote": "promote",
    "upload-config": "upload-config",
    "rollback": "rollback",
    "pull": "pull",
    "local-aws": "local-aws",
    "report": "report",
    "contexts": "context list",
    "new-context": "context new",
    "sfn-deploy": "sfn-deploy",
}
RENAMED = {"context": "new-context"}  # `make context` asks for confirmation now: hints name the new target
# A make variable -> its option; the boolean ones take no value.
OPTIONS = {
    "CLIENT_ID": "--client-id",
    "ENV": "--env",
    "FROM": "--from",
    "TEMPLATE": "--template",
    "PURPOSE": "--purpose",
    "FORCE": "--force",
    "DRY_RUN": "--dry-run",
    "PARALLEL": "--parallel",
}
SWITCHES = {"FORCE", "DRY_RUN"}
MAKE_COMMAND = re.compile(r"`make ([a-z][a-z0-9-]*)((?: [A-Z_]+=[^\s`]*)*)`")
# A make variable in prose, with the option it stands for in brackets or not: "FORCE=1 (--force)", "CLIENT_ID=...".
MAKE_VARIABLE = re.compile(r"\b(" + "|".join(OPTIONS) + r")=([^\s`)]*)(?: \(--[a-z-]+\))?")


def current() -> str:
    """make, nox or python (the default: run directly)."""
    value = os.environ.get(VARIABLE, "")
    return value if value in ("make", "nox") else "python"


def print_exit_line(code: int) -> None:
    """A failing command's last line, `exit N: meaning`; under nox (and make) the noxfile prints it, after nox's own."""
    if current() == "python":
        print(f"exit {code}: {EXIT_MEANINGS.get(code, 'failed')}", file=sys.stderr)


def _option(name: str, value: str) -> str:
    return OPTIONS[name] if name in SWITCHES else f"{OPTIONS[name]} {value}"


def _command(match: re.Match[str]) -> str:
    target = RENAMED.get(match[1], match[1])
    settings = match[2].split()
    if current() == "make" or target not in COMMANDS:
        return f"`make {' '.join([target, *settings])}`"
    options = [_option(*setting.split("=", 1)) for setting in settings]
    if current() == "nox":
        return f"`nox -s {target}{' -- ' + ' '.join(options) if options else ''}`"
    return f"`python -m tasks {' '.join([COMMANDS[target], *options])}`"


def for_interface(text: str) -> str:
    """text with its make commands and variables in the syntax of the interface that started the toolkit."""
    text = MAKE_COMMAND.sub(_command, text)
    if current() == "make":
        return text
    return MAKE_VARIABLE.sub(lambda m: _option(m[1], m[2]), text)
