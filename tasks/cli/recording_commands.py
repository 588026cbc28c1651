"""`recordings`: the recordings folder, one line per recording."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from tasks.cli.common import ROOT
from tasks.errors import EXIT_PASSED
from tasks.flows.recordings_list import age, list_recordings
from tasks.interface import for_interface
from tasks.settings import load_settings
from tasks.visible import visible


def recordings_command(args: argparse.Namespace) -> int:
    listing = list_recordings(load_settings(ROOT))
    print(f"recordings in {listing.folder} (matching: {listing.matching})")
    if not listing.rows:
        print(for_interface("none yet: record once with `LOCAL_SERVICES=bedrock=record,http=record make local-e2e`"))
        return EXIT_PASSED
    since = f"in {listing.last_run.name}" if listing.last_run else "(no run yet)"
    now = datetime.now(UTC)
    print(f"{'service':<10} {'age':>6} {'hits':>5}  {'state':<11} {'file':<48} request  (hits: {since})")
    for row in listing.rows:
        hits = "-" if row.hits is None else str(row.hits)
        state = row.state if len(row.state) <= 11 else "broken"
        when, target = age(row.recorded_at, now), visible(row.target[:100])
        print(f"{row.service:<10} {when:>6} {hits:>5}  {state:<11} {row.path:<48} {target}")
        if row.state.startswith("broken"):
            print(f"    {visible(row.state)}")
    return EXIT_PASSED
