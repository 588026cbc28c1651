"""`python -m tasks`: the toolkit's command line."""

import os
import signal
import sys

from tasks.errors import EXIT_MEANINGS, Terminated, interrupted_code


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


signal.signal(signal.SIGTERM, _terminated)  # SIGTERM (CI timeouts, docker stop) is handled like Ctrl-C
try:
    from tasks.cli import main

    code = main()
except KeyboardInterrupt as err:  # while starting, before a command runs
    code = interrupted_code(err)
    print(f"interrupted while starting: nothing was done\nexit {code}: {EXIT_MEANINGS[code]}", file=sys.stderr)
sys.stdout.flush()
sys.stderr.flush()
# Skip the interpreter's teardown (about 0.1 s with boto3 and moto loaded): every file is written and closed by now.
os._exit(code)
