"""Sample ingest Lambda: collect the client's sources' items from bundled sample data into the data bucket.

Event: {"client_id": ..., "period_days": N?, "sources": [...]?, "dry_run": bool?, "simulate": ...?}
Writes s3://$DATA_BUCKET/ingested/{client_id}/YYYY/MM/DD/items.json (nothing on a dry run).
Like the real ingest it swallows failures: with every source failing it answers success and writes [].
simulate: "nothing_ingested" (every source fails), "stale_input" (a leftover folder dated tomorrow, which the
normalize step then reads instead of this run's).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import timedelta
from pathlib import Path

from vectora_common import answer, client_config, dated_prefix, error_answer, now, read_yaml, simulated, write_json

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
    if not event.get("client_id"):
        return answer({"status": "error", "error": "client_id is required"}, 400)
    try:
        return _ingest(event)
    except Exception as err:  # noqa: BLE001 - the real handler answers 500 with the error's name and message
        return error_answer(err)


def _ingest(event: dict) -> dict:
    started = time.monotonic()
    client_id = event["client_id"]
    try:
        config = client_config(client_id)
        catalog = read_yaml(os.environ["CONFIG_BUCKET"], "canonical/sources/source_catalog.yaml")
    except Exception as err:  # noqa: BLE001 - reported in the body, as the real ingest does
        print(f"[ERROR] cannot load configuration for {client_id}: {err}")
        return answer({"client_id": client_id, "status": "error", "error": f"configuration: {err}"})
    period_days = int(event.get("period_days") or config.get("pipeline", {}).get("default_period_days", 30))
    min_words = config.get("source_config", {}).get("content_filters", {}).get("min_word_count", 0)
    sources = _enabled_sources(config, catalog, event.get("sources"))
    failed = sources if simulated(event, "nothing_ingested") else set()
    if failed:
        print(f"[ERROR] every source failed: name resolution failed for {len(failed)} sources")
    when = now()
    raw_items = json.loads(SAMPLE_ITEMS.read_text(encoding="utf-8"))
    collected = [
        _item(r, when.date(), when.isoformat())
        for r in raw_items
        if r["source_key"] in sources - failed and r["age_days"] <= period_days
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
        "sources_processed": len(sources - failed),
        "sources_failed": len(failed),
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
    bucket, key = os.environ["DATA_BUCKET"], f"ingested/{client_id}/{dated_prefix(when)}/items.json"
    if body["dry_run"]:
        print(f"dry run: would write {len(final)} items to s3://{bucket}/{key}")
    else:
        write_json(bucket, key, final)
        if simulated(event, "stale_input"):
            write_json(bucket, f"ingested/{client_id}/{dated_prefix(when + timedelta(days=1))}/items.json", final)
    body["s3_output_path"] = f"s3://{bucket}/{key}"
    body["execution_time_seconds"] = round(time.monotonic() - started, 3)
    return answer(body)
