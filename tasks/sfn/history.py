"""An execution's history (GetExecutionHistory's events) turned back into per-client, per-step answers. Pure.

In a Map the clients' events interleave; each Task event is traced back through `previousEventId` to the
TaskStateEntered that began it, whose state name gives the step and whose input gives the client_id. A retry adds
TaskScheduled events to the same state: their count is the step's attempts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OUTCOMES = {
    "TaskSucceeded": "taskSucceededEventDetails",
    "TaskFailed": "taskFailedEventDetails",
    "TaskTimedOut": "taskTimedOutEventDetails",
    "TaskStartFailed": "taskStartFailedEventDetails",
    "TaskSubmitFailed": "taskSubmitFailedEventDetails",
}


@dataclass(frozen=True)
class StepAnswer:
    """What one client's step got: the Lambda integration's output, or the error of its last attempt."""

    client_id: str
    step: str
    function_name: str | None
    attempts: int  # TaskScheduled events: 1, plus one per retry
    outcome: str | None  # TaskSucceeded, TaskFailed, TaskTimedOut, ...; None: still running
    output: Any = None  # StatusCode, ExecutedVersion, Payload (the function's answer), ...
    error: str | None = None
    cause: str | None = None
    entered_at: Any = None
    finished_at: Any = None


def _details(event: Mapping[str, Any]) -> dict[str, Any]:
    return next((dict(v) for k, v in event.items() if k.endswith("EventDetails")), {})


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def step_answers(events: Iterable[Mapping[str, Any]]) -> list[StepAnswer]:
    """Each step each client entered, in the order entered (a step entered again is a new answer)."""
    by_id = {event["id"]: event for event in events}
    starts: dict[int, dict[str, Any]] = {}  # TaskStateEntered id -> what its Task events said
    for event in by_id.values():
        if event["type"] == "TaskStateEntered":
            starts[event["id"]] = {"attempts": 0, "outcome": None, "function": None}
            continue
        if not event["type"].startswith("Task") or event["type"] == "TaskStateExited":
            continue
        origin = event.get("previousEventId")
        while origin in by_id and by_id[origin]["type"] != "TaskStateEntered":
            origin = by_id[origin].get("previousEventId")
        if origin not in starts:
            continue
        found = starts[origin]
        if event["type"] == "TaskScheduled":
            found["attempts"] += 1
            found["function"] = (_json(_details(event).get("parameters")) or {}).get("FunctionName")
        elif event["type"] in OUTCOMES:
            found |= {"outcome": event["type"], "details": _details(event), "finished_at": event.get("timestamp")}
    answers = []
    for start_id in sorted(starts):
        entered, found = by_id[start_id], starts[start_id]
        details = _details(entered)
        outcome = found.get("details", {})
        answers.append(
            StepAnswer(
                client_id=(_json(details.get("input")) or {}).get("client_id", ""),
                step=details.get("name", "").split(": ", 1)[-1],
                function_name=found["function"],
                attempts=found["attempts"],
                outcome=found["outcome"],
                output=_json(outcome.get("output")),
                error=outcome.get("error"),
                cause=outcome.get("cause"),
                entered_at=entered.get("timestamp"),
                finished_at=found.get("finished_at"),
            )
        )
    return answers


def by_client(answers: Iterable[StepAnswer]) -> dict[str, list[StepAnswer]]:
    """The answers grouped per client_id, each client's in step order."""
    grouped: dict[str, list[StepAnswer]] = {}
    for answer in answers:
        grouped.setdefault(answer.client_id, []).append(answer)
    return grouped
