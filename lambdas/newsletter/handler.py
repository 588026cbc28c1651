"""Sample newsletter Lambda: select the best curated items, fill the config's sections, write three files.

Event: {"client_id": ..., "target_date": "YYYY-MM-DD"?, "simulate": ...?}. Reads the curated items of target_date
(default today, UTC), as the real one does in latest_run_only mode. Writes
s3://$NEWSLETTERS_BUCKET/{client_id}/<target date>/newsletter.md, newsletter.json and manifest.json.
Like the real one it answers "no_items" only when no curated items exist for that date; when items exist but none is
selected (simulate "nothing_selected") it still publishes a "0 signals" newsletter and answers success.
"""

from __future__ import annotations

import os
import re
import time
from datetime import date, datetime

from botocore.exceptions import ClientError
from vectora_common import answer, client_config, now, read_json, run_step, simulated, write_json, write_object

SECTION_ICONS = {"regulatory_updates": "📋", "partnerships_deals": "🤝", "clinical_updates": "🔬", "others": "📰"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _select(items: list[dict], config: dict, threshold: float | None = None) -> list[dict]:
    """Matched items above the threshold, best first, near-duplicate titles removed, at most max_items_total."""
    selection = config.get("newsletter_selection", {})
    threshold = selection.get("min_score_threshold", 0) if threshold is None else threshold
    dedup = selection.get("deduplication", {})
    similarity = dedup.get("similarity_threshold", 0.75) if dedup.get("enabled", True) else 1.01
    candidates = sorted(
        (
            i
            for i in items
            if (i.get("matching_results") or {}).get("matched_domains")
            and i["scoring_results"]["final_score"] >= threshold
        ),
        key=lambda i: (-i["scoring_results"]["final_score"], i["item_id"]),
    )
    chosen: list[dict] = []
    for item in candidates:
        words = _words(item["title"])
        if all(len(words & _words(c["title"])) / max(len(words | _words(c["title"])), 1) < similarity for c in chosen):
            chosen.append(item)
    return chosen[: selection.get("max_items_total", 20)]


def _distribute(items: list[dict], config: dict) -> list[dict]:
    """Each item goes to the first section whose event types (or '*') accept it, within the section's limit."""
    sections = []
    remaining = list(items)
    for spec in config.get("newsletter_layout", {}).get("sections", []):
        types = spec.get("filter_event_types", ["*"])
        taken = [
            i
            for i in remaining
            if "*" in types or i["normalized_content"]["event_classification"]["primary_type"] in types
        ]
        taken = taken[: spec.get("max_items", 5)]
        remaining = [i for i in remaining if i not in taken]
        sections.append({"section_id": spec["id"], "title": spec["title"], "items": taken})
    return sections


def _entry(item: dict) -> dict:
    entities = item["normalized_content"]["entities"]
    return {
        "item_id": item["item_id"],
        "title": item["title"],
        "score": item["scoring_results"]["final_score"],
        "published_at": item["published_at"],
        "source_url": item["url"],
        "summary": item["normalized_content"]["summary"],
        "entities": {k: entities[k] for k in ("companies", "technologies", "trademarks")},
    }


def _markdown(client_name: str, when: datetime, sections: list[dict], total: int, tldr: bool) -> str:
    filled = [s for s in sections if s["items"]]
    lines = [
        f"# {client_name} - Week of {when.date().isoformat()}",
        "",
        f"**Generated:** {when:%B %d, %Y} | **Items:** {total} signals | **Coverage:** {len(filled)} sections",
        "",
    ]
    if tldr:
        lines += ["## 🎯 TL;DR"] + [f"• {s['items'][0]['summary']}" for s in filled[:3]] + [""]
    for section in filled:
        icon = SECTION_ICONS.get(section["section_id"], "📰")
        lines += ["---", "", f"## {icon} {section['title']}", f"*{len(section['items'])} items • Sorted by score*", ""]
        for item in section["items"]:
            players = ", ".join(item["entities"]["companies"] + item["entities"]["trademarks"])
            lines += [
                f"### {item['title']}",
                f"**Score:** {item['score']} • **Date:** {item['published_at']}",
                "",
                item["summary"],
                "",
                f"**Key Players:** {players or 'n/a'}",
                "",
                f"[**Read more →**]({item['source_url']})",
                "",
            ]
    lines += [
        "## 📊 Newsletter Metrics",
        f"- **Total Signals:** {total} items",
        f"- **Generated:** {when.isoformat()}",
        "",
    ]
    return "\n".join(lines)


def _target_date(event: dict) -> date:
    text = event.get("target_date")
    return date.fromisoformat(text) if text else now().date()


def _curated(client_id: str, day: date) -> list[dict]:
    """The curated items of that day, or [] when there are none."""
    try:
        return read_json(os.environ["DATA_BUCKET"], f"curated/{client_id}/{day:%Y/%m/%d}/items.json")
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return []
        raise


def lambda_handler(event, context):
    return run_step(event, _newsletter)


def _newsletter(event: dict) -> dict:
    started = time.monotonic()
    client_id = event["client_id"]
    config = client_config(client_id)
    day = _target_date(event)
    items = _curated(client_id, day)
    body = {"client_id": client_id, "target_date": day.isoformat(), "items_processed": len(items)}
    if not items:
        print(f"newsletter {client_id}: no curated items for {day}")
        return answer(
            body
            | {
                "status": "no_items",
                "newsletter_generated": False,
                "execution_time_seconds": round(time.monotonic() - started, 3),
            }
        )
    selected = _select(items, config, float("inf") if simulated(event, "nothing_selected") else None)
    when = now()
    sections = [s | {"items": [_entry(i) for i in s["items"]]} for s in _distribute(selected, config)]
    placed = sum(len(s["items"]) for s in sections)
    bucket, prefix = os.environ["NEWSLETTERS_BUCKET"], f"{client_id}/{day:%Y/%m/%d}"
    name = config.get("client_profile", {}).get("name", client_id)
    markdown = _markdown(name, when, sections, placed, config.get("newsletter_delivery", {}).get("include_tldr", True))
    document = {
        "newsletter_id": f"{client_id}_{day:%Y_%m_%d}",
        "client_id": client_id,
        "generated_at": when.isoformat(),
        "period": {"start_date": day.isoformat(), "end_date": day.isoformat()},
        "metrics": {
            "total_items": placed,
            "items_by_section": {s["section_id"]: len(s["items"]) for s in sections},
            "unique_sources": len({i["source_key"] for i in selected}),
        },
        "sections": [s for s in sections if s["items"]],
    }
    paths = {
        "markdown": write_object(bucket, f"{prefix}/newsletter.md", markdown, "text/markdown; charset=utf-8"),
        "json": write_json(bucket, f"{prefix}/newsletter.json", document),
    }
    paths["manifest"] = write_json(
        bucket,
        f"{prefix}/manifest.json",
        {
            "generation_date": when.isoformat(),
            "target_date": day.isoformat(),
            "status": "completed",
            "total_items": placed,
            "files": {"newsletter.md": paths["markdown"], "newsletter.json": paths["json"]},
        },
    )
    print(f"newsletter {client_id}: {placed} items in {sum(1 for s in sections if s['items'])} sections")
    return answer(
        body
        | {
            "status": "success",
            "items_selected": placed,
            "newsletter_generated": True,
            "sections": len(document["sections"]),
            "s3_paths": paths,
            "execution_time_seconds": round(time.monotonic() - started, 3),
        }
    )
