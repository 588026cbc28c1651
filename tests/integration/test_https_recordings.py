"""https recorded and replayed: the embedded server terminates a function's CONNECT with a certificate from the
clone's CA, and in `record` goes out through the user's own proxy and trust settings.

The "real" web is an https server on 127.0.0.1 with its own test CA (trustme), reachable only through a corporate
style CONNECT proxy on 127.0.0.1 (HTTPS_PROXY of the toolkit's process), which maps every host name to it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

from tasks.local.services import function_environment
from tests.integration.test_services import embedded_aws

HOST = "news.example.test"
FEED = b"<?xml version='1.0'?><rss version='2.0'><channel><title>real, over https</title></channel></rss>"


@dataclass
class Upstream:
    url: str = ""
    paths: list[str] = field(default_factory=list)
    tunnels: list[str] = field(default_factory=list)  # CONNECT targets the corporate proxy was asked for


@contextlib.contextmanager
def https_upstream_behind_a_proxy(
    tmp_path: Path, host: str = HOST, answer: Callable[[str], bytes | None] = lambda path: FEED
) -> Iterator[tuple[Upstream, str, Path]]:
    """An https server for host (its own CA) answering answer(path) (None: 404) and a CONNECT proxy that reaches it;
    yields them, the proxy's URL and the CA file that trusts the server."""
    ca = trustme.CA()
    upstream = Upstream()

    class Feed(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            upstream.paths.append(self.path)
            body = answer(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    web = ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(context)
    web.socket = context.wrap_socket(web.socket, server_side=True)
    web_port = web.server_address[1]

    class Proxy(BaseHTTPRequestHandler):
        def do_CONNECT(self) -> None:
            upstream.tunnels.append(self.path)
            remote = socket.create_connection(("127.0.0.1", web_port))  # every host name resolves to the upstream
            self.send_response(200, "Connection established")
            self.end_headers()
            sockets = [self.connection, remote]
            with remote:
                while True:
                    ready = select.select(sockets, [], [], 5)[0]
                    if not ready:
                        return
                    for source in ready:
                        data = source.recv(65536)
                        if not data:
                            return
                        (remote if source is self.connection else self.connection).sendall(data)

        def log_message(self, *args: Any) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    ca_file = tmp_path / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    servers = (web, proxy)
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield upstream, f"http://127.0.0.1:{proxy.server_address[1]}", ca_file
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def fetch_as_a_function(endpoint: str, url: str, variables: dict[str, str]) -> bytes:
    """GET url as a handler does: the embedded server as proxy, trusting the CA bundle its environment names."""
    context = ssl.create_default_context(cafile=variables["SSL_CERT_FILE"])
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": endpoint, "https": endpoint}), urllib.request.HTTPSHandler(context=context)
    )
    with opener.open(url, timeout=20) as answer:
        return bytes(answer.read())


pytestmark = pytest.mark.usefixtures("no_developer_proxy")


def test_https_is_recorded_through_the_users_proxy_then_replayed_offline(
    contexts_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recordings = tmp_path / "recordings"
    variables = {"LOCAL_RECORDINGS": str(recordings), "LOCAL_CA_DIR": str(tmp_path / "local-ca")}
    url = f"https://{HOST}/feeds/camurus.xml"
    with https_upstream_behind_a_proxy(tmp_path) as (upstream, proxy, upstream_ca):
        monkeypatch.setenv("HTTPS_PROXY", proxy)  # the user's own network: a corporate proxy and its CA
        monkeypatch.setenv("SSL_CERT_FILE", str(upstream_ca))
        with embedded_aws(contexts_dir, LOCAL_SERVICES="http=record", **variables) as aws:
            trust = function_environment(aws.endpoint, aws.settings)
            assert fetch_as_a_function(aws.endpoint, url, trust) == FEED
            notes = aws.services.notes()
    assert upstream.paths == ["/feeds/camurus.xml"] and upstream.tunnels == [f"{HOST}:443"]
    assert notes == ("http (record): 1 request passed through to the real service and recorded",)
    (saved,) = recordings.rglob("*.json")
    assert saved.parent.name == HOST and url in saved.read_text()
    monkeypatch.delenv("HTTPS_PROXY")  # offline now: no upstream, no proxy
    with embedded_aws(contexts_dir, LOCAL_SERVICES="http=replay", **variables) as aws:
        trust = function_environment(aws.endpoint, aws.settings)
        assert fetch_as_a_function(aws.endpoint, url, trust) == FEED
        with pytest.raises(urllib.error.HTTPError) as missing:
            fetch_as_a_function(aws.endpoint, f"https://{HOST}/feeds/never-recorded.xml", trust)
        notes = aws.services.notes()
    assert missing.value.code == 404
    assert "http (replay): 1 request replayed from recordings in recordings (not live)" in notes


def test_a_client_without_the_clones_ca_refuses_the_local_certificate(contexts_dir: Path, tmp_path: Path) -> None:
    with embedded_aws(contexts_dir, LOCAL_CA_DIR=str(tmp_path / "local-ca")) as aws:
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch_as_a_function(
                aws.endpoint, f"https://{HOST}/x.xml", {"SSL_CERT_FILE": ssl.get_default_verify_paths().cafile or ""}
            )
    assert not list((tmp_path / "local-ca").rglob("hosts/*.pem"))  # issued keys do not stay on disk


def test_passthrough_tunnels_through_the_users_proxy(
    contexts_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with https_upstream_behind_a_proxy(tmp_path) as (upstream, proxy, upstream_ca):
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        with embedded_aws(contexts_dir, LOCAL_SERVICES="http=passthrough") as aws:
            # the function itself verifies the real host (here: the upstream's own CA)
            assert (
                fetch_as_a_function(aws.endpoint, f"https://{HOST}/p.xml", {"SSL_CERT_FILE": str(upstream_ca)}) == FEED
            )
    assert upstream.tunnels == [f"{HOST}:443"] and upstream.paths == ["/p.xml"]
