"""Sample ingest Lambda: collect the client's sources' items from bundled sample data into the data bucket.

Event: {"client_id": ..., "period_days": N?, "sources": [...]?, "dry_run": bool?}
Writes s3://$DATA_BUCKET/ingested/{client_id}/YYYY/MM/DD/items.json
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import timedelta
from pathlib import Path

from vectora_common import answer, client_config, dated_prefix, now, read_yaml, write_json

SAMPLE_ITEMS = Path(__file__).with_name("sample_items.json")


def _enabled_sources(config: dict, catalog: dict, requested: list[str] | None) -> set[str]:
    if requested:
        return set(requested)
    wanted = set(config.get("source_config", {}).get("source_bouquets_enabled", []))
    keys = {k for b in catalog.get("bouquets", []) if b["bouquet_id"] in wanted for k in b["source_keys"]}
    keys |= set(config.get("source_config", {}).get("sources_extra_enabled", []))
    enabled = {s["source_key"] for s in catalog.get("sources", []) if s.get("enabled", True)}
    return keys & enabled


def _item(raw: dict, today, ingested_at: str) -> dict:
    published = (today - timedelta(days=raw["age_days"])).isoformat()
    digest = hashlib.sha256(raw["content"].encode()).hexdigest()
    url_digest = hashlib.sha256(raw["url"].encode()).hexdigest()
    return {
        "item_id": f"{raw['source_key']}_{published.replace('-', '')}_{url_digest[:6]}",
        "source_key": raw["source_key"],
        "source_type": raw["source_key"].split("__")[0],
        "title": raw["title"],
        "content": raw["content"],
        "url": raw["url"],
        "published_at": published,
        "ingested_at": ingested_at,
        "language": "en",
        "content_hash": f"sha256:{digest}",
        "metadata": {"author": "", "tags": [], "word_count": len(raw["content"].split())},
    }


def lambda_handler(event, context):
    started = time.monotonic()
    client_id = event.get("client_id")
    if not client_id:
        return answer({"status": "error", "error": "client_id is required"}, 400)
    try:
        config = client_config(client_id)
        catalog = read_yaml(os.environ["CONFIG_BUCKET"], "canonical/sources/source_catalog.yaml")
    except Exception as err:  # noqa: BLE001 - reported in the body, as the real ingest does
        print(f"[ERROR] cannot load configuration for {client_id}: {err}")
        return answer({"client_id": client_id, "status": "error", "error": f"configuration: {err}"})
    period_days = int(event.get("period_days") or config.get("pipeline", {}).get("default_period_days", 30))
    min_words = config.get("source_config", {}).get("content_filters", {}).get("min_word_count", 0)
    sources = _enabled_sources(config, catalog, event.get("sources"))
    when = now()
    raw_items = json.loads(SAMPLE_ITEMS.read_text(encoding="utf-8"))
    collected = [
        _item(r, when.date(), when.isoformat())
        for r in raw_items
        if r["source_key"] in sources and r["age_days"] <= period_days
    ]
    kept = [i for i in collected if i["metadata"]["word_count"] >= min_words]
    final, seen = [], set()
    for item in kept:
        if item["url"] not in seen:
            seen.add(item["url"])
            final.append(item)
    print(f"ingest {client_id}: {len(sources)} sources, {len(collected)} items, {len(final)} after filters and dedup")
    body = {
        "client_id": client_id,
        "execution_date": when.isoformat(),
        "sources_processed": len(sources),
        "sources_failed": 0,
        "items_ingested": len(collected),
        "items_filtered_out": len(collected) - len(kept),
        "items_deduplicated": len(kept) - len(final),
        "items_final": len(final),
        "period_days_used": period_days,
        "dry_run": bool(event.get("dry_run")),
        "ingestion_mode": "balanced",
        "temporal_mode": "strict",
        "status": "success",
    }
    if not body["dry_run"]:
        key = f"ingested/{client_id}/{dated_prefix(when)}/items.json"
        body["s3_output_path"] = write_json(os.environ["DATA_BUCKET"], key, final)
    body["execution_time_seconds"] = round(time.monotonic() - started, 3)
    return answer(body)
