"""Start AWS's runtime client (awslambdaric) in an execution environment; end it if the runtime that started it dies.

Run by the function's own interpreter as `python -P lambda_launcher.py` (so this folder is not importable) with the
Lambda environment variables set (`_HANDLER`, `AWS_LAMBDA_RUNTIME_API`, `LAMBDA_TASK_ROOT`...). Standard library only.
"""

import os
import runpy
import sys
import threading
import time


def _exit_with_parent() -> None:
    """End this process when the runtime that started it is gone (killed with -9): no orphan handler lives on."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(137)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


if __name__ == "__main__":
    _exit_with_parent()
    sys.argv = ["awslambdaric", os.environ["_HANDLER"]]
    runpy.run_module("awslambdaric", run_name="__main__", alter_sys=True)
