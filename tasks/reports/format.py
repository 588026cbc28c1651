"""How report values are written for people: durations, sizes, money, verdicts, checks. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.contexts.records import target_label
from tasks.pipeline.checks import CheckResult
from tasks.pipeline.records import RunRecord

NA = "n/a"
VERDICTS = {
    "passed": "✅ PASSED",
    "failed": "❌ FAILED",
    "unknown": "❓ UNKNOWN",
    "interrupted": "⏹ INTERRUPTED",
    "running": "… RUNNING",
}


@dataclass(frozen=True)
class About:
    """What a report says of the context beside the run itself."""

    purpose: str = ""
    template: str = ""
    full_logs: tuple[tuple[str, str], ...] = ()  # (step, path of its saved CloudWatch log)


NO_ABOUT = About()


def ms(value: float | None) -> str:
    if value is None:
        return NA
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def seconds(value: float | None) -> str:
    return NA if value is None else f"{value:.2f} s"


def memory(used: int | None, size: int | None) -> str:
    return f"{used if used is not None else NA} / {size if size is not None else NA} MB"


def size(value: int | None) -> str:
    if value is None:
        return NA
    return f"{value / 1024:.1f} KiB" if value >= 1024 else f"{value} B"


def percent(value: float | None) -> str:
    return NA if value is None else f"{value * 100:.0f} %"


def usd(value: float | None) -> str:
    """Dollars with enough decimals to show sub-cent Lambda costs (two significant digits, at least 2 decimals)."""
    if value is None:
        return NA
    if value >= 0.01 or value == 0:
        return f"${value:.2f}"
    digits = 1
    while value * 10**digits < 10:
        digits += 1
    return f"${value:.{digits}f}"


def count(value: Any) -> str:
    return NA if value is None else str(value)


def verdict(record: RunRecord) -> str:
    """PASSED, FAILED...; a run on an emulated env says so: it is never a pass on the real env; nor is one whose
    answers came from a stub or recordings: "PASSED (bedrock stubbed, web replayed)"."""
    said = VERDICTS.get(record.status, record.status.upper())
    return (f"{said} on {where(record)}" if emulated(record) else said) + stand_ins(record)


def stand_ins(record: RunRecord) -> str:
    """ " (bedrock stubbed, web replayed)" for a run whose answers did not all come from live services, else ""."""
    return f" ({', '.join(record.stand_ins)})" if record.stand_ins else ""


def emulated(record: RunRecord) -> bool:
    """A run of dev/stage/prod's names against a custom endpoint (make local-aws, moto...), not the real env."""
    return record.env != "local" and record.endpoint is not None


def where(record: RunRecord) -> str:
    return target_label(record.env, record.endpoint if emulated(record) else None)


CHECK_MARKS = {"ok": "✅ ok", "warn": "⚠️ WARN", "fail": "❌ FAIL"}


def check_mark(check: CheckResult) -> str:
    """ok, WARN (a warn-level check that did not hold: amber, never green) or FAIL."""
    return CHECK_MARKS["ok" if check.ok else check.level]


def observed(check: CheckResult) -> str:
    value = check.observed
    if isinstance(value, dict):
        return ", ".join(f"{k} {NA if v is None else v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3g}"
    return NA if value is None else str(value)


def checks_tally(record: RunRecord) -> str:
    """e.g. `12/13 held, 1 warning`."""
    held = sum(1 for c in record.checks if c.ok)
    warnings = len(record.warnings)
    return f"{held}/{len(record.checks)} held" + (f", {warnings} warning{'s' * (warnings > 1)}" if warnings else "")


def checks_cell(record: RunRecord) -> str:
    """A comparison cell: the tally and each check that did not hold, with its level and what was seen."""
    if not record.checks:
        return NA
    bad = [f"{c.step}.{c.name} {check_mark(c)} ({observed(c)})" for c in record.checks if not c.ok]
    return checks_tally(record) + ("; " + "; ".join(bad) if bad else "")
