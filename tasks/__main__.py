"""`python -m tasks`: the toolkit's command line."""

import sys

from tasks.cli import main

sys.exit(main())
