"""`python -m tasks`: the toolkit's command line."""

import os
import sys

from tasks.entry import run

# Skip the interpreter's teardown (about 0.1 s with boto3 and moto loaded): every file is written and closed by now.
os._exit(run(sys.argv[1:]))
