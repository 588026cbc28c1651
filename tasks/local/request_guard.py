"""Who the embedded server answers: its own clients on this machine, never a web page the user happens to visit.

A browser can reach 127.0.0.1 too: a page may POST to it (no preflight for text/plain), or rebind its own host name
to 127.0.0.1 (DNS rebinding) and read the answers. So every request must name the server itself in `Host`
(`127.0.0.1:PORT`, `localhost:PORT`, or a `*.localhost:PORT` S3 bucket host), a request carrying an `Origin` that is
not the server itself is refused, and moto's admin routes (`/moto-api/...`: reset wipes every bucket) need the
server's own token. A function's proxy requests (an absolute URL, or CONNECT) name their target in `Host`: they are
the function's web traffic, answered by services.py, never by moto or the Lambda API.
"""

from __future__ import annotations

import hmac
from typing import Any

ADMIN_PREFIX = "/moto-api"
ADMIN_TOKEN_HEADER = "X-Local-Aws-Token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def is_proxy_request(environ: dict[str, Any]) -> bool:
    """A function's web request through this server as its proxy: CONNECT, or an absolute http:// URL."""
    return environ.get("REQUEST_METHOD") == "CONNECT" or environ.get("REQUEST_URI", "").startswith("http://")


def _own_host(host: str, port: int) -> bool:
    name, sep, given_port = host.lower().rpartition(":")
    if not sep or given_port != str(port):
        return False
    return name in LOOPBACK_NAMES or name.endswith(".localhost")


def refusal(environ: dict[str, Any], port: int, admin_token: str) -> str | None:
    """Why this request is not answered, or None when it comes from one of the server's own clients."""
    if is_proxy_request(environ):
        return None
    host = environ.get("HTTP_HOST", "")
    if not _own_host(host, port):
        return f"Host {host[:80]!r} is not this server (127.0.0.1:{port}): refused (DNS rebinding)"
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and origin.lower() not in {f"http://{name}:{port}" for name in LOOPBACK_NAMES}:
        return f"Origin {origin[:80]!r} is not this server: refused (a web page cannot drive the embedded AWS)"
    if environ.get("PATH_INFO", "").startswith(ADMIN_PREFIX):
        given = environ.get("HTTP_" + ADMIN_TOKEN_HEADER.upper().replace("-", "_"), "")
        if not hmac.compare_digest(given.encode(), admin_token.encode()):
            return f"{ADMIN_PREFIX} is the toolkit's own: refused without this server's {ADMIN_TOKEN_HEADER}"
    return None
