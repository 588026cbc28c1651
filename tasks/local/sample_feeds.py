"""The sample pipeline's web sources: one RSS feed per source, generated from the sample items, dated from today.

Served by the embedded AWS at http://sample-feeds.vectora.invalid/<source_key>.xml (the sample source catalogue's
rss_url), so the sample ingest fetches real HTTP and parses real RSS, offline, and its items never age out.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, time, timedelta
from email.utils import format_datetime
from pathlib import Path

HOST = "sample-feeds.vectora.invalid"


def feed(items_file: Path, source_key: str, today: datetime) -> bytes | None:
    """The RSS document of source_key's items (published age_days before today, at noon UTC), None if it has none."""
    items = [i for i in json.loads(items_file.read_text(encoding="utf-8")) if i["source_key"] == source_key]
    if not items:
        return None
    rss = ET.Element("rss", version="2.0")
    channel = ET.SubElement(rss, "channel")
    ET.SubElement(channel, "title").text = source_key
    ET.SubElement(channel, "link").text = f"http://{HOST}/{source_key}.xml"
    noon = datetime.combine(today.date(), time(12), UTC)
    for item in items:
        entry = ET.SubElement(channel, "item")
        ET.SubElement(entry, "title").text = item["title"]
        ET.SubElement(entry, "link").text = item["url"]
        ET.SubElement(entry, "description").text = item["content"]
        ET.SubElement(entry, "pubDate").text = format_datetime(noon - timedelta(days=item["age_days"]))
    return ET.tostring(rss, encoding="utf-8", xml_declaration=True)
