"""The figures every report shows, computed from a RunRecord: total time, the item funnel, the Lambda cost. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tasks.pipeline.records import RunRecord

# AWS Lambda on-demand prices (USD), first tier, per region and architecture. A snapshot: update it from
# PRICE_SOURCE when AWS changes its prices; every report names the source and this date.
PRICE_SOURCE = "https://aws.amazon.com/lambda/pricing/ (on-demand, first tier)"
PRICE_DATE = "2026-11-26"
REQUEST_PRICE = 0.20 / 1_000_000
GB_SECOND_PRICE = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
REGIONS_PRICED = ("eu-west-3", "eu-west-1", "us-east-1", "us-west-2", "eu-central-1")

# (label, step, count key) in funnel order.
FUNNEL = (
    ("ingested", "ingest", "items_ingested"),
    ("final after dedup", "ingest", "items_final"),
    ("normalized", "normalize-score", "items_normalized"),
    ("matched", "normalize-score", "items_matched"),
    ("selected", "newsletter", "items_selected"),
)


def total_seconds(record: RunRecord) -> float | None:
    if not record.finished_at:
        return None
    return (datetime.fromisoformat(record.finished_at) - datetime.fromisoformat(record.started_at)).total_seconds()


@dataclass(frozen=True)
class FunnelStage:
    label: str
    count: int | None
    of_previous: float | None
    of_first: float | None


def funnel(record: RunRecord) -> list[FunnelStage]:
    """The item counts from ingested to selected, with each stage's rate of the previous one and of the first."""
    counts = {step.step: step.counts for step in record.steps}
    stages: list[FunnelStage] = []
    first = previous = None
    for label, step, key in FUNNEL:
        value = counts.get(step, {}).get(key)
        count = value if isinstance(value, int) else None
        if count is not None and first is None:
            first = count
        stages.append(FunnelStage(label, count, _rate(count, previous), _rate(count, first)))
        if count is not None:
            previous = count
    return stages


def _rate(count: int | None, base: int | None) -> float | None:
    return count / base if count is not None and base else None


@dataclass(frozen=True)
class StepCost:
    step: str
    architecture: str
    gb_seconds: float | None
    usd: float | None


@dataclass(frozen=True)
class Cost:
    steps: tuple[StepCost, ...]
    usd: float | None
    region: str
    priced: bool
    bedrock_usage: dict[str, Any]

    @property
    def note(self) -> str:
        where = "" if self.priced else f" (no prices for {self.region}: eu-west-3 prices used)"
        bedrock = (
            "Bedrock usage reported but not priced" if self.bedrock_usage else "Lambda cost only; Bedrock not included"
        )
        return f"Lambda prices from {PRICE_SOURCE}, as of {PRICE_DATE}{where}. {bedrock}."


def architecture(record: RunRecord, step: str) -> str:
    architectures = ((record.functions or {}).get(step) or {}).get("Architectures") or ["x86_64"]
    return "arm64" if "arm64" in architectures else "x86_64"


def cost(record: RunRecord, region: str | None = None) -> Cost:
    """Estimated Lambda cost of the run's invocations: requests plus billed GB-seconds, at the prices of region
    (default: the run's own region, else the pipeline's, eu-west-3)."""
    region = region or record.region or REGIONS_PRICED[0]
    steps = []
    for step in record.steps:
        arch = architecture(record, step.step)
        if step.billed_duration_ms is None or step.memory_size_mb is None:
            steps.append(StepCost(step.step, arch, None, None))
            continue
        gb_seconds = step.billed_duration_ms / 1000 * step.memory_size_mb / 1024
        steps.append(StepCost(step.step, arch, gb_seconds, REQUEST_PRICE + gb_seconds * GB_SECOND_PRICE[arch]))
    known = [s.usd for s in steps if s.usd is not None]
    usage = {
        s.step: s.body["bedrock_usage"]
        for s in record.steps
        if isinstance(s.body, dict) and s.body.get("bedrock_usage")
    }
    return Cost(tuple(steps), sum(known) if known else None, region, region in REGIONS_PRICED, usage)
