"""`python -m tasks`: the toolkit's command line."""

import os
import sys

from tasks.interface import print_exit_line
from tasks.signals import handle_sigterm, interrupted_code

handle_sigterm()
try:
    from tasks.cli import main

    code = main()
except KeyboardInterrupt:  # while starting, before a command runs
    code = interrupted_code()
    print("interrupted while starting: nothing was done", file=sys.stderr)
    print_exit_line(code)
sys.stdout.flush()
sys.stderr.flush()
# Skip the interpreter's teardown (about 0.1 s with boto3 and moto loaded): every file is written and closed by now.
os._exit(code)
