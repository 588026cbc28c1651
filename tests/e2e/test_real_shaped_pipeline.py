"""README's worked example, through make, on a fixture pipeline with the real one's shape (tests/fixtures/real_shape:
https sources, prompts holding the day's date, JSON answers parsed, a layer, a handler folder whose requirements
conflict with its layer's): point, record once with network, replay offline the next day, a removed recording
failing by name, stub rules on a machine with no credentials.

The network is local: the feeds are an https server on 127.0.0.1 with its own CA, reachable only through a
CONNECT proxy (the user's HTTPS_PROXY); "Bedrock" is a server on 127.0.0.1 (LOCAL_AWS_UPSTREAM).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tasks.local import sample_feeds
from tests.conftest import REPO, make
from tests.integration.test_https_recordings import https_upstream_behind_a_proxy

FEEDS_HOST = "feeds.pharma-news.test"
FIXTURE = "tests/fixtures/real_shape"
SETTINGS = f"""\
LOCAL_HANDLER_INGEST=lambdas/ingest:handler.lambda_handler
LOCAL_HANDLER_NORMALIZE_SCORE={FIXTURE}/normalize_score:handler.lambda_handler
LOCAL_HANDLER_NEWSLETTER=lambdas/newsletter:handler.lambda_handler
LOCAL_LAMBDA_LAYERS=lambdas/common:{FIXTURE}/layer
LOCAL_CANONICAL_DIR={FIXTURE}/canonical
LOCAL_ENV_VARS=env.local.json
LOCAL_RECORDINGS=recordings
"""


def env_vars(today: str) -> str:
    model = {"BEDROCK_MODEL_ID": "anthropic.claude-3-sonnet-20240229-v1:0", "BEDROCK_REGION": "us-east-1"}
    return json.dumps({"Parameters": {"LOG_LEVEL": "INFO"}, "normalize-score": model | {"FIXTURE_TODAY": today}})


@contextmanager
def bedrock_upstream() -> Iterator[tuple[str, list[str]]]:
    """A "real" Bedrock on 127.0.0.1 that answers the JSON the prompt asks for; yields its URL and the prompts it
    gets."""
    prompts: list[str] = []

    class Model(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = request["messages"][-1]["content"][0]["text"]
            prompts.append(prompt)
            title = re.search(r"Title: ([^\n]+)", prompt)
            text = json.dumps({"summary": title[1] if title else ""})
            body = json.dumps({"id": "msg_1", "content": [{"type": "text", "text": text}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Model)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", prompts
    finally:
        server.shutdown()
        server.server_close()


def feeds(path: str) -> bytes | None:
    key = path.strip("/").removesuffix(".xml")
    return sample_feeds.feed(REPO / "lambdas/ingest/sample_items.json", key, datetime.now(UTC))


def last_lines(result: Any) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-12:])


def test_the_worked_example_records_once_and_replays_the_next_day(clone: Path, tmp_path: Path) -> None:
    (clone / ".env").write_text(SETTINGS)
    (clone / "env.local.json").write_text(env_vars("2026-12-07"))
    contexts = clone / "contexts"
    before = set(contexts.iterdir())

    # Set-up checked first: the handler folder's own pins conflict with its layer's; no context is used up.
    conflict = make(clone, "local-e2e", LOCAL_SERVICES="bedrock=deny")
    assert conflict.returncode == 2 and "exit 3: environment" in conflict.stderr, last_lines(conflict)
    assert "cannot build a function environment" in conflict.stderr and "LOCAL_SKIP_REQUIREMENTS=" in conflict.stderr
    assert set(contexts.iterdir()) == before
    (clone / ".env").write_text(SETTINGS + "LOCAL_SKIP_REQUIREMENTS=normalize-score\n")  # code plus layers

    # Once, with network: the feeds over https through the user's proxy, Bedrock with the user's credentials.
    with https_upstream_behind_a_proxy(tmp_path, FEEDS_HOST, feeds) as (upstream, proxy, ca_file):
        with bedrock_upstream() as (bedrock, prompts):
            recorded = make(
                clone,
                "local-e2e",
                LOCAL_SERVICES="bedrock=record,http=record",
                LOCAL_AWS_UPSTREAM=bedrock,
                HTTPS_PROXY=proxy,
                SSL_CERT_FILE=str(ca_file),
            )
    assert recorded.returncode == 0, last_lines(recorded)
    assert re.search(r"run \S+: passed\n", recorded.stdout)  # live: nothing stood in
    assert len(upstream.tunnels) >= 1 and all(t == f"{FEEDS_HOST}:443" for t in upstream.tunnels)
    assert prompts and all("Ingested on 2026-12-07" in p for p in prompts)
    assert (clone / "recordings" / "matching.yaml").is_file()

    # The next day, offline: the prompts now hold 2026-12-08, no proxy, no upstream.
    (clone / "env.local.json").write_text(env_vars("2026-12-08"))
    replayed = make(clone, "local-e2e", LOCAL_SERVICES="bedrock=replay")
    assert replayed.returncode == 0, last_lines(replayed)
    assert "passed (bedrock replayed, web replayed)" in replayed.stdout
    listed = make(clone, "recordings")
    assert listed.returncode == 0 and "bedrock" in listed.stdout and FEEDS_HOST in listed.stdout

    # A removed recording fails the run by name, whatever the handler's fallback made of it.
    removed = sorted((clone / "recordings" / "bedrock").rglob("*.json"))[0]
    removed.unlink()
    missing = make(clone, "local-e2e", LOCAL_SERVICES="bedrock=replay")
    assert missing.returncode == 2, last_lines(missing)  # make's own code; the task's is on the exit line
    assert "error: bedrock: no recording of POST /model/" in missing.stderr and "closest bedrock/" in missing.stderr
    assert "exit 1: a step or a check failed" in missing.stderr

    # A machine with no credentials and no Bedrock recordings: the team's stub rules.
    stubbed = make(clone, "local-e2e", LOCAL_BEDROCK_STUB_RULES=f"{FIXTURE}/stub-rules.yaml")
    assert stubbed.returncode == 0, last_lines(stubbed)
    assert "passed (bedrock stubbed, web replayed)" in stubbed.stdout
