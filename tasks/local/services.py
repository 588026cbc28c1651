"""The rest of AWS, and the web, for local handlers: each service denied, stubbed, replayed or passed through.

How a handler's calls get here, across the process boundary, with nothing installed in the function's environment:
- AWS: functions get AWS_ENDPOINT_URL=<embedded server>, so every boto3 call reaches it; the SigV4 credential scope
  (`.../<region>/<service>/aws4_request`) says which service was called. S3, Lambda, CloudWatch Logs, STS and Step
  Functions stay with the embedded AWS; every other service comes here.
- The web: functions get HTTP_PROXY/HTTPS_PROXY=<embedded server> (NO_PROXY for the loopback, so boto3 still talks
  to it directly). Python's urllib, requests and most clients honour these variables, so a plain-http request arrives
  as a proxy request with the absolute URL, which is answered here; an https request arrives as CONNECT, which is
  tunnelled to the real host in `passthrough`, answered here in `record` and `replay` (TLS with a certificate from the
  clone's CA, which the function trusts: https_terminator.py, local_ca.py), and refused in `deny`. A proxy needs no
  code in the function, unlike a `sitecustomize` patching clients one by one, and unlike URL rewriting it needs no
  change to the team's source catalogue.

Per service (settings LOCAL_SERVICES): `deny` answers at once like a missing permission, naming the setting to change;
`passthrough` forwards (AWS calls re-signed with the user's own credentials, see tasks/aws/passthrough.py); `record`
passes through and saves each answer under LOCAL_RECORDINGS; `replay` answers from those recordings, offline; Bedrock's
`stub` answers deterministically (bedrock_stub.py). The sample pipeline's own feeds are always served (sample_feeds.py).
`notes()` says what was served how, so a replayed pass is never taken for a live one.
"""

from __future__ import annotations

import json
import logging
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
from tasks.local import bedrock_stub, https_terminator, recordings, sample_feeds
from tasks.local.local_ca import LocalCa
from tasks.local.matching import load_matching
from tasks.local.recordings import Exchange, RecordingStore
from tasks.local.request_guard import is_proxy_request
from tasks.local.stub_rules import NoRule, load_stub_rules
from tasks.settings import Settings

# sts: the local account; states: moto's Step Functions
EMBEDDED_SERVICES = frozenset({"s3", "lambda", "logs", "sts", "states"})
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")
QUERY_SCOPE = re.compile(
    r"X-Amz-Credential=[^&]*?(?:/|%2F)\d{8}(?:/|%2F)(?P<region>[^/%&]+)(?:/|%2F)(?P<service>[^/%&]+)"
)
NO_PROXY = "127.0.0.1,localhost"
ACTIONS = {
    "denied": "denied ({setting})",
    "stubbed": "answered by the stub (deterministic, not the real service)",
    "refused": "refused by the stub (not InvokeModel with a messages body, or no stub rule matched)",
    "replayed": "replayed from recordings in {recordings} (not live)",
    "not recorded": "had no recording in {recordings} and failed",
    "broken recording": "found a recording in {recordings} that cannot be used",
    "recorded": "passed through to the real service and recorded",
    "passed through": "passed through to the real service",
    "tunnelled": "tunnelled to the real host (https)",
    "failed upstream": "could not reach the real service",
    "refused upstream": "refused: not an AWS service, region and endpoint (no credential sent)",
    "sample": "served from the sample feeds (generated, not live)",
}
UNFIT_STUB = (
    "bedrock is denied: the built-in stub answers the sample pipeline only (its answers would not parse in yours); "
    "give your pipeline stub rules (LOCAL_BEDROCK_STUB_RULES=stub-rules.yaml, see README) or replay recordings "
    "(LOCAL_SERVICES=bedrock=replay)"
)
STAND_INS = {"stubbed": "stubbed", "replayed": "replayed", "sample": "from the sample feeds"}
TUNNEL_IDLE_S = 60
INTERCEPTED = frozenset({"record", "replay"})  # http modes whose https the server answers itself
_PORT = re.compile(r"\d{1,5}")
LOGGER = logging.getLogger(__name__)


def function_environment(endpoint: str, settings: Settings) -> dict[str, str]:
    """The variables that send a function's web requests through the embedded server (its AWS calls already go),
    and, where the server answers https itself (http in record or replay), make it trust the clone's CA."""
    netloc = urlsplit(endpoint).netloc
    proxy = f"http://{netloc}"
    intercepted = service_mode(settings, "http") in INTERCEPTED
    trust = LocalCa(settings.local_ca_dir).function_environment() if intercepted else {}
    return {
        "HTTP_PROXY": proxy,
        "HTTPS_PROXY": proxy,
        "NO_PROXY": NO_PROXY,
        "http_proxy": proxy,
        "https_proxy": proxy,
        "no_proxy": NO_PROXY,
        **trust,
    }


def service_mode(settings: Settings, service: str) -> str:
    """The LOCAL_SERVICES mode of a service (its own, else the `*` one)."""
    return settings.local_services.get(service) or settings.local_services["*"]


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


def describe_miss(miss: recordings.Miss, folder: Path) -> str:
    """A replay miss in one line: the request (shortened), the closest recording and what differed, what to do."""
    request = miss.request
    body = request.body.decode("utf-8", "replace").replace("\n", " ")
    said = f"{request.service}: no recording of {request.method} {request.target[:120]}"
    said += f" (body {body[:80]!r}{'...' if len(body) > 80 else ''})" if body else ""
    if miss.closest is not None:
        said += f"; closest {miss.closest.relative_to(folder).as_posix()} differs: {miss.difference}"
    return (
        f"{said}; fill in response.status and response.body of {miss.pending.relative_to(folder.parent).as_posix()} "
        f"and commit it, or record it once (LOCAL_SERVICES={request.service}=record)"
    )


class Services:
    """A WSGI app for the calls the embedded AWS does not serve itself; counts what it did for notes()."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.store = RecordingStore(settings.local_recordings, load_matching(settings.local_recordings))
        self.ca = LocalCa(settings.local_ca_dir)
        self.clock = clock
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._hits: Counter[Path] = Counter()
        self._misses: list[recordings.Miss] = []
        self._problems: list[str] = []
        rules = settings.local_bedrock_stub_rules
        self.stub_rules = load_stub_rules(rules) if rules is not None else None
        self.stub_unfit = self.stub_rules is None and not settings.sample_normalizer
        self._lock = threading.Lock()

    def claims(self, environ: dict[str, Any]) -> bool:
        """Whether this request is a handler's web request or a call to an AWS service the embedded AWS lacks."""
        scope = _aws_scope(environ)
        return is_proxy_request(environ) or (scope is not None and scope[0] not in EMBEDDED_SERVICES)

    def mode(self, service: str) -> str:
        return service_mode(self.settings, service)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        call = self._call(environ)
        if environ["REQUEST_METHOD"] == "CONNECT":
            mode = self.mode("http")
            if mode == "passthrough":
                self._count(call, "tunnelled")
                _tunnel(environ, call.target)  # never returns: the connection is the tunnel's
            if mode in INTERCEPTED:
                self._terminate_tls(environ, call.target)  # never returns either
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
        if is_proxy_request(environ) or scope is None:
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
        if mode == "stub" and self.stub_unfit:
            self._count(call, "denied")
            return self._problem(call, 403, "AccessDeniedException", UNFIT_STUB)
        if mode == "stub":
            return self._stub(call)
        request, secrets = recordings.redacted(
            recordings.Request(call.service, call.label, call.method, call.target, call.body),
            call.headers.get("Authorization") if call.service == "http" else None,
        )
        if mode == "replay":
            return self._replay(call, request)
        try:
            exchange = self._forward(call)
        except passthrough.RefusedEndpoint as err:
            self._count(call, "refused upstream")
            LOGGER.warning("passthrough refused: %s", err)
            return _error(call, 403, "LocalPassthroughRefused", f"not passed through, no credential sent: {err}")
        except (OSError, ValueError) as err:
            self._count(call, "failed upstream")
            return _error(call, 502, "LocalPassthroughFailed", f"{call.service}: {err}")
        if mode == "record" and exchange.status < 400:
            self.store.save(request, exchange, secrets, self.clock())
            self._count(call, "recorded")
        else:
            self._count(call, "passed through")
        return exchange

    def _replay(self, call: Call, request: recordings.Request) -> Exchange:
        """The recorded answer to request; else a named miss (kept for the run's verdict) and a ready-to-fill file."""
        path = self.store.path(request)
        try:
            found = self.store.load(path)
        except recordings.RecordingError as err:
            self._count(call, "broken recording")
            return self._problem(call, 500, "LocalRecordingBroken", str(err))
        if found is not None:
            self._count(call, "replayed")
            with self._lock:
                self._hits[path] += 1
            return found
        self._count(call, "not recorded")
        closest, difference = self.store.closest(request)
        pending = self.store.save_pending(request, self.clock())
        miss = recordings.Miss(request, self.store.key(request)[0], closest, difference, pending)
        with self._lock:
            self._misses.append(miss)
        return _error(call, 404, "LocalRecordingNotFound", describe_miss(miss, self.settings.local_recordings))

    def stand_ins(self) -> tuple[str, ...]:
        """What answered instead of the live services, for the run's verdict: ("bedrock stubbed", "web replayed")."""
        with self._lock:
            seen = sorted({(service, action) for service, _, action in self._counts if action in STAND_INS})
        return tuple(f"{'web' if service == 'http' else service} {STAND_INS[action]}" for service, action in seen)

    def misses(self) -> tuple[recordings.Miss, ...]:
        """The requests replay had no recording for, in the order they came."""
        with self._lock:
            return tuple(self._misses)

    def problems(self) -> tuple[str, ...]:
        """What a stand-in could not answer and the run must fail on: broken recordings, prompts no stub rule
        matches, the built-in stub refused for a pipeline that is not the sample's."""
        with self._lock:
            return tuple(self._problems)

    def hits(self) -> dict[str, int]:
        """How many times each recording answered, by path relative to the recordings folder."""
        folder = self.settings.local_recordings
        with self._lock:
            return {path.relative_to(folder).as_posix(): n for path, n in sorted(self._hits.items())}

    def _forward(self, call: Call) -> Exchange:
        """Send call on: the web as it came (its own Authorization kept), AWS signed again with the user's credentials,
        read only once the URL is known to be AWS's own endpoint for the call's service and region."""
        if call.service == "http":
            headers = passthrough.forwarded_headers(call.headers, signed_again=False)
            return passthrough.send(call.method, call.target, headers, call.body)
        url = passthrough.aws_url(call.service, call.region, call.target, self.settings.local_aws_upstream)
        credentials = passthrough.user_credentials(self.settings.local_passthrough_profile)
        if credentials is None:
            raise ValueError(
                "no AWS credentials to pass this call through with: log in (aws sso login) or set "
                "LOCAL_PASSTHROUGH_PROFILE"
            )
        request = passthrough.signed(call.method, url, call.headers, call.body, credentials, call.service, call.region)
        return passthrough.send_aws(request)

    def _stub(self, call: Call) -> Exchange:
        try:
            document = bedrock_stub.answer(call.target.split("?", 1)[0], call.body, self.stub_rules)
        except NoRule as err:
            self._count(call, "refused")
            return self._problem(call, 400, "ValidationException", f"bedrock stub: {err}")
        except bedrock_stub.StubError as err:
            self._count(call, "refused")
            return _error(call, 400, "ValidationException", f"{err}; use LOCAL_SERVICES=bedrock=replay or passthrough")
        self._count(call, "stubbed")
        return Exchange(200, {"Content-Type": "application/json"}, json.dumps(document).encode())

    def _problem(self, call: Call, status: int, code: str, message: str) -> Exchange:
        """An error answer that the run's verdict must not miss (kept once for problems())."""
        with self._lock:
            if message not in self._problems:
                self._problems.append(message)
        return _error(call, status, code, message)

    def _sample_feed(self, call: Call, items_file: Path) -> Exchange:
        source_key = urlsplit(call.target).path.strip("/").removesuffix(".xml")
        document = sample_feeds.feed(items_file, source_key, self.clock())
        if document is None:
            return _error(call, 404, "NotFound", f"the sample feeds have no source {source_key!r}")
        with self._lock:
            self._counts[("http", "sample", "sample")] += 1
        return Exchange(200, {"Content-Type": "application/rss+xml; charset=utf-8"}, document)

    def _terminate_tls(self, environ: dict[str, Any], target: str) -> None:
        """Answer a function's https in record or replay: TLS as target's host (the clone's CA), then each request
        inside as a web call; raises ConnectionAbortedError at the end (werkzeug answers nothing more)."""
        host = target.rpartition(":")[0].strip("[]")
        if not host or not _PORT.fullmatch(target.rpartition(":")[2]):
            raise ConnectionAbortedError(f"CONNECT {target[:80]!r}: not host:port")

        def answer(method: str, url: str, headers: dict[str, str], body: bytes) -> Exchange:
            return self._answer(Call("http", "", method, url, headers, body))

        https_terminator.serve(environ["werkzeug.socket"], self.ca.server_context(host), target, answer)
        raise ConnectionAbortedError("https connection closed")

    def _refuse_https(self, call: Call) -> Exchange:
        self._count(call, "denied")
        return _error(call, 403, "Forbidden", f"CONNECT {call.target}: {self._denied_message('http')}")

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


def _tunnel(environ: dict[str, Any], target: str) -> None:
    """Answer CONNECT on the raw client socket and relay bytes both ways until either side closes.

    Raises ConnectionAbortedError at the end, which werkzeug takes as a dropped connection and answers nothing more.
    """
    client: socket.socket = environ["werkzeug.socket"]
    host, _, port = target.rpartition(":")
    try:
        remote = passthrough.connect(host.strip("[]"), int(port))
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
