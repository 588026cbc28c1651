"""The rest of AWS, and the web, for local handlers: each service denied, stubbed, replayed or passed through.

How a handler's calls get here, across the process boundary, with nothing installed in the function's environment:
- AWS: functions get AWS_ENDPOINT_URL=<embedded server>, so every boto3 call reaches it; the SigV4 credential scope
  (`.../<region>/<service>/aws4_request`) says which service was called. S3, Lambda and CloudWatch Logs stay with the
  embedded AWS; every other service comes here.
- The web: functions get HTTP_PROXY/HTTPS_PROXY=<embedded server> (NO_PROXY for the loopback, so boto3 still talks
  to it directly). Python's urllib, requests and most clients honour these variables, so a plain-http request arrives
  as a proxy request with the absolute URL, which is answered here; an https request arrives as CONNECT, which is
  tunnelled to the real host in `passthrough` and refused otherwise (replaying https would mean minting certificates
  that the function trusts). A proxy needs no code in the function, unlike a `sitecustomize` patching clients one by
  one, and unlike URL rewriting it needs no change to the team's source catalogue.

Per service (settings LOCAL_SERVICES): `deny` answers at once like a missing permission, naming the setting to change;
`passthrough` forwards (AWS calls re-signed with the user's own credentials, see tasks/aws/passthrough.py); `record`
passes through and saves each answer under LOCAL_RECORDINGS; `replay` answers from those recordings, offline; Bedrock's
`stub` answers deterministically (bedrock_stub.py). The sample pipeline's own feeds are always served (sample_feeds.py).
`notes()` says what was served how, so a replayed pass is never taken for a live one.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

from tasks.aws import passthrough
from tasks.local import bedrock_stub, sample_feeds
from tasks.local.recordings import Exchange, RecordingStore
from tasks.settings import Settings

EMBEDDED_SERVICES = frozenset({"s3", "lambda", "logs", "states"})  # states: moto's Step Functions
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")
QUERY_SCOPE = re.compile(
    r"X-Amz-Credential=[^&]*?(?:/|%2F)\d{8}(?:/|%2F)(?P<region>[^/%&]+)(?:/|%2F)(?P<service>[^/%&]+)"
)
NO_PROXY = "127.0.0.1,localhost"
ACTIONS = {
    "denied": "denied ({setting})",
    "stubbed": "answered by the stub (deterministic, not the real service)",
    "refused": "refused by the stub (it answers InvokeModel with an Anthropic messages body only)",
    "replayed": "replayed from recordings in {recordings} (not live)",
    "not recorded": "had no recording in {recordings} and failed",
    "recorded": "passed through to the real service and recorded",
    "passed through": "passed through to the real service",
    "tunnelled": "tunnelled to the real host (https)",
    "failed upstream": "could not reach the real service",
    "sample": "served from the sample feeds (generated, not live)",
}
TUNNEL_IDLE_S = 60


def function_environment(endpoint: str) -> dict[str, str]:
    """The variables that send a function's web requests through the embedded server (its AWS calls already go)."""
    netloc = urlsplit(endpoint).netloc
    proxy = f"http://{netloc}"
    return {
        "HTTP_PROXY": proxy,
        "HTTPS_PROXY": proxy,
        "NO_PROXY": NO_PROXY,
        "http_proxy": proxy,
        "https_proxy": proxy,
        "no_proxy": NO_PROXY,
    }


@dataclass(frozen=True)
class Call:
    """One request a handler made: which service, where, and what."""

    service: str  # an AWS signing name, or "http"
    region: str
    method: str
    target: str  # the path and query for AWS, the absolute URL for the web
    headers: dict[str, str]
    body: bytes

    @property
    def label(self) -> str:
        """What the call asks for, to group recordings: the model (Bedrock), the host (web), else the path's start."""
        if self.service == "http":
            return urlsplit(self.target).netloc
        parts = unquote(self.target.split("?", 1)[0]).strip("/").split("/")
        return parts[1] if parts[0] == "model" and len(parts) > 1 else parts[0]


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    found = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        found["Content-Type"] = environ["CONTENT_TYPE"]
    return found


def _aws_scope(environ: dict[str, Any]) -> tuple[str, str] | None:
    """The (service, region) a SigV4-signed request names, or None for an unsigned one."""
    match = CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", "")) or QUERY_SCOPE.search(
        environ.get("QUERY_STRING", "")
    )
    return (match["service"], match["region"]) if match else None


def _is_proxy_request(environ: dict[str, Any]) -> bool:
    return environ.get("REQUEST_METHOD") == "CONNECT" or environ.get("REQUEST_URI", "").startswith("http://")


def _error(call: Call, status: int, code: str, message: str) -> Exchange:
    """An error answer in the caller's protocol: XML for the query protocol, JSON for the others, text for the web."""
    if call.service == "http":
        return Exchange(status, {"Content-Type": "text/plain; charset=utf-8"}, f"{code}: {message}\n".encode())
    if call.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        error = f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{escape(message)}</Message></Error>"
        xml = f"<ErrorResponse>{error}</ErrorResponse>"
        return Exchange(status, {"Content-Type": "text/xml"}, xml.encode())
    body = json.dumps({"__type": code, "message": message, "Message": message}).encode()
    return Exchange(status, {"Content-Type": "application/json", "x-amzn-ErrorType": code}, body)


class Services:
    """A WSGI app for the calls the embedded AWS does not serve itself; counts what it did for notes()."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.store = RecordingStore(settings.local_recordings)
        self.clock = clock
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    def claims(self, environ: dict[str, Any]) -> bool:
        """Whether this request is a handler's web request or a call to an AWS service the embedded AWS lacks."""
        scope = _aws_scope(environ)
        return _is_proxy_request(environ) or (scope is not None and scope[0] not in EMBEDDED_SERVICES)

    def mode(self, service: str) -> str:
        modes = self.settings.local_services
        return modes.get(service) or modes["*"]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        call = self._call(environ)
        if environ["REQUEST_METHOD"] == "CONNECT":
            if self.mode("http") == "passthrough":
                self._count(call, "tunnelled")
                _tunnel(environ, call.target)  # never returns: the connection is the tunnel's
            exchange = self._refuse_https(call)
        else:
            exchange = self._answer(call)
        reason = "OK" if exchange.status < 400 else "Error"
        headers = [("Content-Length", str(len(exchange.body))), *exchange.headers.items()]
        start_response(f"{exchange.status} {reason}", headers)
        return [exchange.body]

    def notes(self) -> tuple[str, ...]:
        """What the run's calls beyond S3 got, one line per service and outcome, e.g.
        'bedrock (stub): 14 calls answered by the stub (deterministic, not the real service)'."""
        with self._lock:
            counts = sorted(self._counts.items())
        words = {"recordings": self.settings.local_recordings.name, "setting": "LOCAL_SERVICES"}
        return tuple(
            f"{service} ({mode}): {n} {'request' if service == 'http' else 'call'}{'s' if n != 1 else ''} "
            + ACTIONS[action].format(**words)
            for (service, mode, action), n in counts
        )

    def _count(self, call: Call, action: str) -> None:
        with self._lock:
            self._counts[(call.service, self.mode(call.service), action)] += 1

    def _call(self, environ: dict[str, Any]) -> Call:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        scope = _aws_scope(environ)
        if _is_proxy_request(environ) or scope is None:
            return Call("http", "", environ["REQUEST_METHOD"], environ["REQUEST_URI"], _headers(environ), body)
        return Call(scope[0], scope[1], environ["REQUEST_METHOD"], environ["RAW_URI"], _headers(environ), body)

    def _answer(self, call: Call) -> Exchange:
        feeds = self.settings.local_sample_feeds
        if call.service == "http" and feeds is not None and urlsplit(call.target).hostname == sample_feeds.HOST:
            return self._sample_feed(call, feeds)
        mode = self.mode(call.service)
        if mode == "deny":
            self._count(call, "denied")
            return _error(call, 403, "AccessDeniedException", self._denied_message(call.service))
        if mode == "stub":
            return self._stub(call)
        path = self.store.path(call.service, call.label, call.method, call.target, call.body)
        if mode == "replay":
            found = self.store.load(path)
            self._count(call, "replayed" if found else "not recorded")
            return found or _error(call, 404, "LocalRecordingNotFound", self._missing_message(call, path))
        try:
            exchange = self._forward(call)
        except (OSError, ValueError) as err:
            self._count(call, "failed upstream")
            return _error(call, 502, "LocalPassthroughFailed", f"{call.service}: {err}")
        if mode == "record" and exchange.status < 400:
            self.store.save(path, call.method, call.target, call.body, exchange)
            self._count(call, "recorded")
        else:
            self._count(call, "passed through")
        return exchange

    def _forward(self, call: Call) -> Exchange:
        if call.service == "http":
            return passthrough.send(call.method, call.target, passthrough.forwarded_headers(call.headers), call.body)
        credentials = passthrough.user_credentials(self.settings.local_passthrough_profile)
        if credentials is None:
            raise ValueError(
                "no AWS credentials to pass this call through with: log in (aws sso login) or set "
                "LOCAL_PASSTHROUGH_PROFILE"
            )
        base = passthrough.aws_endpoint(call.service, call.region, call.target, self.settings.local_aws_upstream)
        request = passthrough.signed(
            call.method, base + call.target, call.headers, call.body, credentials, call.service, call.region
        )
        return passthrough.send_aws(request)

    def _stub(self, call: Call) -> Exchange:
        try:
            document = bedrock_stub.answer(call.target.split("?", 1)[0], call.body)
        except bedrock_stub.StubError as err:
            self._count(call, "refused")
            return _error(call, 400, "ValidationException", f"{err}; use LOCAL_SERVICES=bedrock=replay or passthrough")
        self._count(call, "stubbed")
        return Exchange(200, {"Content-Type": "application/json"}, json.dumps(document).encode())

    def _sample_feed(self, call: Call, items_file: Path) -> Exchange:
        source_key = urlsplit(call.target).path.strip("/").removesuffix(".xml")
        document = sample_feeds.feed(items_file, source_key, self.clock())
        if document is None:
            return _error(call, 404, "NotFound", f"the sample feeds have no source {source_key!r}")
        with self._lock:
            self._counts[("http", "sample", "sample")] += 1
        return Exchange(200, {"Content-Type": "application/rss+xml; charset=utf-8"}, document)

    def _refuse_https(self, call: Call) -> Exchange:
        self._count(call, "denied")
        reason = (
            self._denied_message("http")
            if self.mode("http") == "deny"
            else "https cannot be recorded or replayed locally (plain http can); use LOCAL_SERVICES=http=passthrough"
        )
        return _error(call, 403, "Forbidden", f"CONNECT {call.target}: {reason}")

    @staticmethod
    def _denied_message(service: str) -> str:
        if service == "bedrock":
            choices = "stub, replay, record or passthrough"
        elif service == "http":
            choices = "replay, record or passthrough"
        else:
            choices = "passthrough (the real service, with your own credentials)"
        return (
            f"{service} is denied in this local run, as a missing permission would be: "
            f"set LOCAL_SERVICES={service}=<mode> (in .env or the environment), mode one of {choices}"
        )

    def _missing_message(self, call: Call, path: Path) -> str:
        return (
            f"no recording of {call.method} {call.target} in {path}: "
            f"record it once with network access (LOCAL_SERVICES={call.service}=record), then commit the file"
        )


def _tunnel(environ: dict[str, Any], target: str) -> None:
    """Answer CONNECT on the raw client socket and relay bytes both ways until either side closes.

    Raises ConnectionAbortedError at the end, which werkzeug takes as a dropped connection and answers nothing more.
    """
    client: socket.socket = environ["werkzeug.socket"]
    host, _, port = target.rpartition(":")
    try:
        remote = socket.create_connection((host, int(port)), timeout=passthrough.TIMEOUT_S)
    except (OSError, ValueError) as err:
        client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        raise ConnectionAbortedError(f"CONNECT {target}: {err}") from err
    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    with remote:
        sockets = [client, remote]
        while True:
            ready, _, _ = select.select(sockets, [], [], TUNNEL_IDLE_S)
            if not ready:
                break
            for source in ready:
                data = source.recv(65536)
                if not data:
                    client.shutdown(socket.SHUT_WR)
                    raise ConnectionAbortedError("tunnel closed")
                (remote if source is client else client).sendall(data)
    raise ConnectionAbortedError("tunnel idle")
