"""report: a summary of contexts, a run re-rendered, or a comparison."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tasks.cli.common import ROOT, client_factory, context_store
from tasks.contexts.records import to_json
from tasks.contexts.store import validate_client_id
from tasks.errors import EXIT_PASSED, UsageError
from tasks.pipeline.records import RunRecord
from tasks.settings import load_settings
from tasks.visible import visible


def report_command(args: argparse.Namespace) -> int:
    from tasks.aws import published_runs
    from tasks.reports import history
    from tasks.reports.html import render_compare_html
    from tasks.reports.markdown import render_compare, render_summary

    settings = load_settings(ROOT, {"VECTORA_ENV": args.env, "AWS_PROFILE": args.profile})
    store = context_store(settings)
    published: list[RunRecord] = []
    if args.env:
        found = published_runs.published_runs(client_factory(settings).s3(), settings)
        published, warning = found.records, found.warning()
        if warning:
            print(warning, file=sys.stderr, flush=True)
    if args.words:
        if args.words[0] != "compare":
            raise UsageError(f"unknown report action {args.words[0]!r}: use `report compare CLIENT_ID CLIENT_ID ...`")
        records = history.runs_to_compare(store, [validate_client_id(c) for c in args.words[1:]], published)
        if args.json:
            print(json.dumps([r.to_json() for r in records], indent=2, ensure_ascii=False))
            return EXIT_PASSED
        print(render_compare(records), end="")
        html = (
            Path(args.html)
            if args.html
            else settings.contexts_dir / "reports" / ("compare-" + "-".join(args.words[1:]) + ".html")
        )
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(visible(render_compare_html(records)), encoding="utf-8")
        print(f"html: {os.path.relpath(html)}")
        return EXIT_PASSED
    if args.client_id is not None:
        record, paths = history.rerender(store.load(validate_client_id(args.client_id)), args.run_id, settings.secrets)
        if args.json:
            print(json.dumps(record.to_json(), indent=2, ensure_ascii=False))
        else:
            print(paths[0].read_text(encoding="utf-8"), end="")
            print("rendered: " + ", ".join(os.path.relpath(p) for p in paths))
        return EXIT_PASSED
    rows = history.summary(store, published)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "client_id": r.client_id,
                        "purpose": r.purpose,
                        "status": r.status,
                        "envs": r.envs,
                        "last_run": to_json(r.last) if r.last else None,
                    }
                    for r in rows
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        print(render_summary(rows), end="")
    return EXIT_PASSED
