"""Data-level checks: what a step's answer and its parsed outputs must show, and the chain between steps. Pure.

The real handlers swallow most failures and still answer success (nothing ingested, Bedrock down, a stale folder,
nothing selected), so a step passes only when these checks hold. Thresholds and levels are data: an expectations
file beside the template (`contexts/templates/<template>.expect.yaml`), copied into each context as `expect.yaml`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tasks.errors import ConfigError
from tasks.json_documents import parse_json

LEVELS = ("fail", "warn")
EXPECT_FILE = "expect.yaml"
DATE_FOLDER = re.compile(r"(\d{4})/(\d{2})/(\d{2})(?:/|$)")
NEWSLETTER_ITEM = re.compile(r"^### ", re.MULTILINE)


@dataclass(frozen=True)
class Rule:
    """One check's settings: its level and, for a threshold check, its bound ("min" or "max")."""

    level: str = "fail"
    bound: str | None = None
    limit: float | None = None


NEWSLETTER_FILES = {"markdown": "newsletter.md", "json": "newsletter.json", "manifest": "manifest.json"}
# The files each step must write (their S3 keys' last part), in the order they are checked.
OUTPUT_FILES = {
    "ingest": ("items.json",),
    "normalize-score": ("items.json",),
    "newsletter": (*NEWSLETTER_FILES.values(),),
}

# (step, check) -> default rule; the order is the order checks are reported in.
DEFAULT_RULES: dict[tuple[str, str], Rule] = {
    ("ingest", "items_written"): Rule(bound="min", limit=1),
    ("ingest", "items_final"): Rule(bound="min", limit=1),
    ("ingest", "count_matches_file"): Rule(),
    ("ingest", "sources_ok"): Rule(bound="min", limit=1),
    ("normalize-score", "reads_this_run_ingest"): Rule(),
    ("normalize-score", "writes_under_ingest_date"): Rule(),
    ("normalize-score", "items_curated"): Rule(bound="min", limit=1),
    ("normalize-score", "not_normalized_share"): Rule(bound="max", limit=0.10),
    ("normalize-score", "entities_found"): Rule(bound="min", limit=1),
    ("newsletter", "reads_this_run_curated"): Rule(),
    ("newsletter", "items_selected"): Rule(bound="min", limit=1),
    ("newsletter", "files_agree"): Rule(),
    ("newsletter", "markdown_items"): Rule(bound="min", limit=1),
}


@dataclass(frozen=True)
class Expectations:
    """The rules a run is held to, and where they come from."""

    rules: Mapping[tuple[str, str], Rule]
    source: str = "built-in defaults"

    def rule(self, step: str, name: str) -> Rule:
        return self.rules[(step, name)]


DEFAULTS = Expectations(DEFAULT_RULES)


def load_expectations(path: Path) -> Expectations:
    """The expectations in path (missing file: the defaults); each entry overrides one check's level or limit."""
    if not path.is_file():
        return DEFAULTS
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping of step -> check -> settings")
    rules = dict(DEFAULT_RULES)
    steps = sorted({step for step, _ in DEFAULT_RULES})
    for step, checks in document.items():
        if step not in steps:
            raise ConfigError(f"{path}: unknown step {step!r}: use one of {', '.join(steps)}")
        for name, settings in (checks or {}).items():
            rules[(step, name)] = _rule(path, step, name, settings)
    return Expectations(rules, str(path))


def _rule(path: Path, step: str, name: str, settings: Any) -> Rule:
    default = DEFAULT_RULES.get((step, name))
    where = f"{path}: {step}.{name}"
    if default is None:
        known = ", ".join(n for s, n in DEFAULT_RULES if s == step)
        raise ConfigError(f"{path}: unknown check {step}.{name}: {step} has {known}")
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}: expected a mapping such as {{level: warn}}")
    allowed = {"level", *([default.bound] if default.bound else [])}
    unknown = set(settings) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown setting {sorted(unknown)[0]!r}: use {' or '.join(sorted(allowed))}")
    level = settings.get("level", default.level)
    if level not in LEVELS:
        raise ConfigError(f"{where}: level {level!r}: use fail or warn")
    limit = settings.get(default.bound, default.limit) if default.bound else None
    if default.bound and (isinstance(limit, bool) or not isinstance(limit, int | float)):
        raise ConfigError(f"{where}: {default.bound} must be a number, not {limit!r}")
    return Rule(level, default.bound, limit)


@dataclass(frozen=True)
class CheckResult:
    """One data-level check as recorded in run.json: what was seen, what was expected, and whether it held."""

    step: str
    name: str
    observed: Any
    expected: str
    level: str
    ok: bool
    message: str = ""

    @property
    def failed(self) -> bool:
        """Not ok and at level fail: the step fails."""
        return not self.ok and self.level == "fail"

    @property
    def warned(self) -> bool:
        return not self.ok and self.level == "warn"


@dataclass(frozen=True)
class Chain:
    """What the steps of this run produced so far, so the next step can be held to consume it."""

    ingest_folder: str | None = None  # e.g. ingested/lai_weekly_v3/2026/11/26
    curated_date: str | None = None  # e.g. 2026/11/26


def date_of(path: str | None) -> str | None:
    """The YYYY/MM/DD folder in an S3 key or URI, if any."""
    match = DATE_FOLDER.search(path or "")
    return "/".join(match.groups()) if match else None


def relative_key(path: str) -> str:
    """A key relative to its bucket: s3://bucket/a/b/ -> a/b."""
    if path.startswith("s3://"):
        path = path.removeprefix("s3://").partition("/")[2]
    return path.strip("/")


def chain_after(step: str, body: Mapping[str, Any], chain: Chain) -> Chain:
    """The chain once step has passed with this answer body."""
    if step == "ingest" and body.get("s3_output_path"):
        return Chain(ingest_folder=relative_key(str(body["s3_output_path"])).rsplit("/", 1)[0])
    if step == "normalize-score":
        return Chain(chain.ingest_folder, date_of(str(body.get("output_path") or "")))
    return chain


def newsletter_event(event: Mapping[str, Any], chain: Chain, today: str) -> dict[str, Any]:
    """The newsletter's event: with target_date set to this run's curated date when that is not today (UTC)."""
    if chain.curated_date and chain.curated_date != today and "target_date" not in event:
        return {**event, "target_date": chain.curated_date.replace("/", "-")}
    return dict(event)


class _Judge:
    """Builds the CheckResults of one step against the expectations."""

    def __init__(self, step: str, expectations: Expectations) -> None:
        self.step = step
        self.expectations = expectations
        self.results: list[CheckResult] = []

    def threshold(
        self, name: str, observed: float | None, what: str, shown: str | None = None, percent: bool = False
    ) -> None:
        rule = self.expectations.rule(self.step, name)
        sign = ">=" if rule.bound == "min" else "<="
        limit = rule.limit if rule.limit is not None else 0
        ok = observed is not None and (observed >= limit if rule.bound == "min" else observed <= limit)
        expected = f"{sign} {_number(limit, percent)}"
        shown = shown or ("n/a" if observed is None else _number(observed, percent))
        self.add(name, observed, expected, ok, f"{what}: {shown}, expected {expected}")

    def equal(self, name: str, observed: Any, wanted: Any, what: str) -> None:
        ok = observed == wanted and wanted is not None
        self.add(name, observed, f"== {wanted}", ok, f"{what}: {observed}, expected {wanted}")

    def add(self, name: str, observed: Any, expected: str, ok: bool, message: str) -> None:
        level = self.expectations.rule(self.step, name).level
        self.results.append(CheckResult(self.step, name, observed, expected, level, ok, "" if ok else message))


def _number(value: float, percent: bool = False) -> str:
    if percent:
        return f"{value * 100:.0f}%"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _parse_json(content: bytes | None) -> Any:
    if content is None:
        return None
    try:
        return parse_json(content, allow_nan=True)
    except ValueError:  # not JSON, or nested too deeply: the check says what it expected
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_ingest(body: Mapping[str, Any], files: Mapping[str, bytes | None], chain: Chain, judge: _Judge) -> None:
    """Ingest starts the chain: it is held to its answer and its items.json only."""
    items = _parse_json(files.get("items.json"))
    written = len(items) if isinstance(items, list) else None
    judge.threshold("items_written", written, "items in items.json", None if written is not None else "not a JSON list")
    final = _int(body.get("items_final"))
    judge.threshold("items_final", final, "items_final in the answer")
    judge.equal("count_matches_file", final, written, "items_final vs items in items.json")
    processed, failed = _int(body.get("sources_processed")), _int(body.get("sources_failed")) or 0
    shown = "n/a" if processed is None else f"{processed} of {processed + failed} sources ({failed} failed)"
    judge.threshold("sources_ok", processed, "sources read without error", shown)


def not_normalized(item: Any) -> bool:
    """An item the normalizer did not really process: a fallback, or an empty summary with no entities."""
    content = item.get("normalized_content") if isinstance(item, dict) else None
    if not isinstance(content, dict):
        return True
    if (content.get("normalization_metadata") or {}).get("fallback_reason"):
        return True
    entities = content.get("entities") or {}
    return not (content.get("summary") or "").strip() and not any(entities.values())


def check_normalize(body: Mapping[str, Any], files: Mapping[str, bytes | None], chain: Chain, judge: _Judge) -> None:
    read = relative_key(str(body.get("last_run_path") or "")) or None
    judge.equal("reads_this_run_ingest", read, chain.ingest_folder, "normalize read ingest folder")
    judge.equal(
        "writes_under_ingest_date",
        date_of(str(body.get("output_path") or "")),
        date_of(chain.ingest_folder),
        "curated date vs this run's ingest date",
    )
    items = _parse_json(files.get("items.json"))
    count = len(items) if isinstance(items, list) else None
    judge.threshold("items_curated", count, "items in curated items.json", None if count is not None else "not a list")
    bad = sum(1 for item in items if not_normalized(item)) if items else 0
    share = bad / count if count else None
    shown = "n/a" if share is None else f"{bad} of {count} items ({share * 100:.0f}%) fallback or empty"
    judge.threshold("not_normalized_share", share, "items not really normalized", shown, percent=True)
    stats = (body.get("statistics") or {}).get("entity_statistics")
    if isinstance(stats, dict):
        found: int | None = sum(v for v in stats.values() if _int(v))
    else:  # older answers: count the items that name any entity
        found = sum(1 for i in items or () if any(((i.get("normalized_content") or {}).get("entities") or {}).values()))
    judge.threshold("entities_found", found, "entities found (statistics.entity_statistics)")


def check_newsletter(body: Mapping[str, Any], files: Mapping[str, bytes | None], chain: Chain, judge: _Judge) -> None:
    manifest = _parse_json(files.get("manifest.json"))
    document = _parse_json(files.get("newsletter.json"))
    target = manifest.get("target_date") if isinstance(manifest, dict) else None
    read = (target or "").replace("-", "/") or date_of(str((body.get("s3_paths") or {}).get("manifest") or ""))
    judge.equal("reads_this_run_curated", read, chain.curated_date, "newsletter date vs this run's curated date")
    selected = _int(body.get("items_selected"))
    judge.threshold("items_selected", selected, "items_selected in the answer")
    in_json = _int(((document or {}).get("metrics") or {}).get("total_items")) if isinstance(document, dict) else None
    in_manifest = _int(manifest.get("total_items")) if isinstance(manifest, dict) else None
    agree = selected is not None and selected == in_json == in_manifest
    judge.add(
        "files_agree",
        {"answer": selected, "newsletter.json": in_json, "manifest.json": in_manifest},
        "all equal",
        agree,
        f"item counts disagree: answer {selected}, newsletter.json {in_json}, manifest.json {in_manifest}",
    )
    markdown = (files.get("newsletter.md") or b"").decode("utf-8", errors="replace")
    judge.threshold("markdown_items", len(NEWSLETTER_ITEM.findall(markdown)), "item headings (###) in newsletter.md")


CHECKERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, bytes | None], Chain, _Judge], None]] = {
    "ingest": check_ingest,
    "normalize-score": check_normalize,
    "newsletter": check_newsletter,
}


def check_step(
    step: str, body: Mapping[str, Any], files: Mapping[str, bytes | None], chain: Chain, expectations: Expectations
) -> list[CheckResult]:
    """Every data-level check of step, from its answer body, its output files (by name) and the chain so far."""
    judge = _Judge(step, expectations)
    CHECKERS[step](body, files, chain, judge)
    return judge.results


def summary(results: list[CheckResult]) -> str:
    """`checks 4/5` plus the names and observations of those that did not hold (for a terminal line)."""
    if not results:
        return ""
    passed = sum(1 for r in results if r.ok)
    text = f"checks {passed}/{len(results)}"
    bad = [f"{'WARN ' if r.warned else ''}{r.name} ({r.message})" for r in results if not r.ok]
    return text + (": " + "; ".join(bad) if bad else "")
