"""A function's https request answered by the embedded server itself: CONNECT accepted, TLS terminated with a
certificate for that host from the clone's CA (local_ca.py), then each HTTP request read inside the tunnel is
answered like a plain-http proxy request (recorded or replayed). The function's client sees the real URL and a
certificate it trusts; nothing in its code changes.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from tasks.local.recordings import Exchange

# (method, absolute URL, headers, body) -> the answer
Answer = Callable[[str, str, dict[str, str], bytes], Exchange]
IDLE_S = 60
MAX_BODY = 64 * 1024 * 1024


def origin(target: str) -> str:
    """`https://host` (or `https://host:port` when not 443) for a CONNECT target `host:port`."""
    host, _, port = target.rpartition(":")
    return f"https://{host}" if port == "443" else f"https://{target}"


def _read_chunked(stream: Any) -> bytes:
    body = b""
    while True:
        size = int(stream.readline(65537).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return body
        body += stream.read(size)
        stream.readline(65537)
        if len(body) > MAX_BODY:
            raise ValueError("chunked body too large")


def serve(client: socket.socket, context: ssl.SSLContext, target: str, answer: Answer) -> None:
    """Accept the CONNECT on client, speak TLS as target's host, and answer its requests until it closes."""
    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    client.settimeout(IDLE_S)
    try:
        tls = context.wrap_socket(client, server_side=True)
    except (OSError, ssl.SSLError):
        return  # the function did not trust the certificate, or went away: its client reports it
    base = origin(target)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = _read_chunked(self.rfile)
            else:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if 0 < length <= MAX_BODY else b""
            headers = dict(self.headers.items())
            exchange = answer(self.command, base + self.path, headers, body)
            self.send_response(exchange.status)
            for name, value in exchange.headers.items():  # an Exchange carries no hop-by-hop header
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(exchange.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(exchange.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    with contextlib.suppress(OSError, ValueError):
        Handler(tls, tls.getpeername(), None)  # type: ignore[arg-type]  # handles the connection, then returns
    with contextlib.suppress(OSError):
        tls.close()
