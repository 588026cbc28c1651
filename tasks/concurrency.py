"""Calls run at the same time, each in a daemon thread: nothing waits for one still running when Ctrl-C comes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def all_at_once(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run every call at once and wait for all; their results in order, or the first failed call's exception (in
    the calls' order, whichever failed first in time)."""
    results: dict[int, T] = {}
    failures: dict[int, Exception] = {}

    def run(index: int, call: Callable[[], T]) -> None:
        try:
            results[index] = call()
        except Exception as err:  # noqa: BLE001 - raised again below, in the caller's thread
            failures[index] = err

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(len(calls)):
        if index in failures:
            raise failures[index]
    return [results[index] for index in range(len(calls))]
