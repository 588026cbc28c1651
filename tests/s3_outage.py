"""Proxies in front of moto's S3 on 127.0.0.1: one fails writes (PUT) with 503, to test an S3 outage mid-upload; one
lets a test act on the machine just before a write goes through."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

OUTAGE = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class S3Outage:
    """Forward reads to upstream; answer every PUT with 503 ServiceUnavailable. Counts the PUTs refused."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.refused_puts = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = dict(self.headers) | {"Host": proxy.upstream.netloc}  # the embedded AWS answers its own Host
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                keep_length = self.command == "HEAD"  # a HEAD answer announces the length of a body it does not send
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection") and (
                        keep_length or key.lower() != "content-length"
                    ):
                        self.send_header(key, value)
                if not keep_length:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def refuse(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.refused_puts += 1
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(OUTAGE)))
                self.end_headers()
                self.wfile.write(OUTAGE)

            def do_PUT(self) -> None:
                proxy.put(self)

            do_GET = do_HEAD = do_POST = do_DELETE = _forward

        return Handler

    def put(self, handler: Any) -> None:
        """A PUT: refused (an outage)."""
        handler.refuse()


class S3Tap(S3Outage):
    """Forward everything, PUTs too, calling before_put(path) before forwarding each PUT (e.g. to fill the disk)."""

    def __init__(self, upstream: str, before_put: Callable[[str], None]) -> None:
        self.before_put = before_put
        super().__init__(upstream)

    def put(self, handler: Any) -> None:
        self.before_put(handler.path)
        handler._forward()
