"""Run several independent jobs with bounded concurrency, and combine their exit codes."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tasks.errors import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PASSED, EXIT_UNKNOWN, EXIT_USAGE

# The worst exit code wins: 130 > 3 > 2 > 4 > 1 > 0.
SEVERITY = (EXIT_INTERRUPTED, EXIT_ENVIRONMENT, EXIT_USAGE, EXIT_UNKNOWN, EXIT_FAILED, EXIT_PASSED)


def worst(codes: list[int]) -> int:
    """The exit code of several jobs."""
    return min(codes, key=lambda code: SEVERITY.index(code) if code in SEVERITY else 0, default=EXIT_PASSED)


def run_bounded(jobs: list[Callable[[], int]], limit: int) -> list[int]:
    """Run jobs, at most limit at a time, each in its own thread; return their exit codes in order.

    The threads are daemons: on Ctrl-C the main thread stops waiting (KeyboardInterrupt propagates) and the
    process may exit while a job still waits on its Lambda; its run stays `running` and is shown as unfinished.
    """
    slots = threading.Semaphore(limit)
    codes: list[int] = [EXIT_FAILED] * len(jobs)  # a job that crashed counts as failed

    def work(index: int) -> None:
        with slots:
            codes[index] = jobs[index]()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    return codes
