"""`python -m tasks`: the toolkit's command line."""

import os
import sys

from tasks.errors import EXIT_ENVIRONMENT
from tasks.interface import print_exit_line
from tasks.signals import handle_sigterm, interrupted_code


def _run() -> int:
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
    return main()


handle_sigterm()
try:
    code = _run()
except KeyboardInterrupt:  # while starting, before a command runs
    code = interrupted_code()
    print("interrupted while starting: nothing was done", file=sys.stderr)
    print_exit_line(code)
sys.stdout.flush()
sys.stderr.flush()
# Skip the interpreter's teardown (about 0.1 s with boto3 and moto loaded): every file is written and closed by now.
os._exit(code)
