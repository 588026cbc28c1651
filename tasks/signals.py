"""SIGTERM (CI timeouts, `docker stop`) handled like Ctrl-C: the run is recorded interrupted, the exit code is 143."""

from __future__ import annotations

import signal
from types import FrameType

from tasks.errors import EXIT_INTERRUPTED, EXIT_TERMINATED

_received: set[int] = set()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _received.add(signum)
    raise KeyboardInterrupt


def handle_sigterm() -> None:
    """From now on SIGTERM raises KeyboardInterrupt, as Ctrl-C does, and is remembered for the exit code."""
    signal.signal(signal.SIGTERM, _interrupt)


def interrupted_code() -> int:
    """The exit code of an interruption: 143 after a SIGTERM, else 130 (Ctrl-C)."""
    return EXIT_TERMINATED if signal.SIGTERM in _received else EXIT_INTERRUPTED
