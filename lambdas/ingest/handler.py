"""Sample ingest Lambda: fetch the client's sources' RSS feeds over HTTP and write their items to the data bucket.

Event: {"client_id": ..., "period_days": N?, "sources": [...]?, "dry_run": bool?, "simulate": ...?}
Each source's rss_url comes from canonical/sources/source_catalog.yaml (locally, the embedded AWS serves the sample's
feeds, or replays recorded ones). Writes s3://$DATA_BUCKET/ingested/{client_id}/YYYY/MM/DD/items.json (nothing on a
dry run). Like the real ingest it swallows failures: a source that fails counts in sources_failed, and with every
source failing it answers success and writes [].
simulate: "nothing_ingested" (every source's fetch fails), "stale_input" (a leftover folder dated tomorrow, which the
normalize step then reads instead of this run's).
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from email.utils import parsedate_to_datetime

from vectora_common import answer, client_config, dated_prefix, now, read_yaml, run_step, simulated, write_json

FETCH_TIMEOUT_S = 20
USER_AGENT = "vectora-inbox-ingest/2 (sample)"


class SourceFailed(Exception):
    """A source whose feed could not be fetched or parsed."""


def _enabled_sources(config: dict, catalog: dict, requested: list[str] | None) -> dict[str, dict]:
    """The sources to ingest, by source_key: the event's, else the config's bouquets and extras that are enabled."""
    known = {s["source_key"]: s for s in catalog.get("sources", [])}
    if requested:
        return {key: known.get(key, {"source_key": key}) for key in requested}
    wanted = set(config.get("source_config", {}).get("source_bouquets_enabled", []))
    keys = {k for b in catalog.get("bouquets", []) if b["bouquet_id"] in wanted for k in b["source_keys"]}
    keys |= set(config.get("source_config", {}).get("sources_extra_enabled", []))
    return {key: known[key] for key in sorted(keys) if key in known and known[key].get("enabled", True)}


def _fetch(source: dict, event: dict) -> bytes:
    """The source's feed, fetched over HTTP (through the environment's proxy settings, as urllib does)."""
    url = source.get("rss_url")
    if not url:
        raise SourceFailed("no rss_url in the source catalogue")
    if simulated(event, "nothing_ingested"):
        raise SourceFailed(f"<urlopen error [Errno -2] Name or service not known> ({url})")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as err:
        raise SourceFailed(f"{err} ({url})") from err


def _entries(source_key: str, feed: bytes) -> list[dict]:
    """The feed's items as {title, url, content, published_at}."""
    try:
        channel = ET.fromstring(feed).find("channel")
    except ET.ParseError as err:
        raise SourceFailed(f"not RSS: {err}") from err
    if channel is None:
        raise SourceFailed("not RSS: no channel")
    try:
        return [
            {
                "source_key": source_key,
                "title": (entry.findtext("title") or "").strip(),
                "url": (entry.findtext("link") or "").strip(),
                "content": (entry.findtext("description") or "").strip(),
                "published_at": parsedate_to_datetime(entry.findtext("pubDate") or "").date().isoformat(),
            }
            for entry in channel.iter("item")
        ]
    except ValueError as err:
        raise SourceFailed(f"an item has no valid pubDate: {err}") from err


def _item(raw: dict, ingested_at: str) -> dict:
    published = raw["published_at"]
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


def _collect(sources: dict[str, dict], event: dict) -> tuple[list[dict], int]:
    """Every source's feed entries, and how many sources failed (each one logged, none fatal: the real way)."""
    entries, failed = [], 0
    for key, source in sources.items():
        try:
            entries += _entries(key, _fetch(source, event))
        except SourceFailed as err:
            failed += 1
            print(f"[ERROR] source {key} failed: {err}")
    return entries, failed


def lambda_handler(event, context):
    return run_step(event, _ingest)


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
    entries, failed = _collect(sources, event)
    when = now()
    oldest = when.date() - timedelta(days=period_days)
    collected = [_item(e, when.isoformat()) for e in entries if date.fromisoformat(e["published_at"]) >= oldest]
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
        "sources_processed": len(sources) - failed,
        "sources_failed": failed,
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
