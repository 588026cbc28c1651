"""The toolkit's entry point, as `python -m tasks` and the nox sessions call it: one command, its exit code."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from tasks.errors import EXIT_ENVIRONMENT
from tasks.interface import print_exit_line
from tasks.signals import handle_sigterm, interrupted_code


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command, SIGTERM handled like Ctrl-C (the caller may put its own handler back after); its exit code,
    with everything printed flushed. A bug (an exception no command turns into an error line) is a traceback and 1."""
    handle_sigterm()
    try:
        code = _run(argv)
    except SystemExit as stop:  # argparse: --help (0) and usage errors (2), already printed
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    except KeyboardInterrupt:  # while starting, before a command runs
        code = interrupted_code()
        print("interrupted while starting: nothing was done", file=sys.stderr)
        print_exit_line(code)
    except Exception:  # noqa: BLE001 - as Python itself would report it, then the exit line
        traceback.print_exc()
        code = 1
        print_exit_line(code)
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _run(argv: Sequence[str] | None) -> int:
    """Run the command; outside the toolkit's environment (`python3 -m tasks`), say in one line how to reach it."""
    try:
        from tasks.cli import main
    except ModuleNotFoundError as err:
        print(
            f"error: {sys.executable} lacks the toolkit's packages (no module {err.name!r}): "
            "run `make venv`, then use `.venv/bin/python -m tasks`",
            file=sys.stderr,
        )
        return EXIT_ENVIRONMENT
    return main(argv)
