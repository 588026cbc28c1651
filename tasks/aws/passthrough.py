"""Forward a handler's request to the real service: AWS calls re-signed with the user's own credentials, web as is.

A handler only ever holds dummy keys; its SigV4 signature is dropped here and the request signed again (botocore's
SigV4Auth) with the credentials of the toolkit's own session, for the service and region the handler's signature named.
Those two names come from the caller, so they choose nothing: both must be names botocore knows (a service model whose
signing name is that service, a region of a partition), the endpoint is botocore's own resolution for them, and the
URL, parsed back, must be an `amazonaws.com` host of that service. Anything else is refused before credentials are read.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

import boto3
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError

from tasks.local.recordings import Exchange

# Headers of the handler's own SigV4 signature: dropped when an AWS call is signed again, kept for a web host.
SIGNATURE_HEADERS = frozenset({"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"})
# Headers that belong to one hop, never forwarded.
HOP_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "proxy-connection",
        "proxy-authorization",
        "keep-alive",
        "transfer-encoding",
        "expect",
        "accept-encoding",
    }
)
DROPPED_ANSWER_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})
TIMEOUT_S = 120
NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
AWS_HOST_SUFFIX = ".amazonaws.com"


class RefusedEndpoint(ValueError):
    """A signed call that names a service, region or URL the toolkit will not send the user's credentials to."""


def forwarded_headers(headers: Mapping[str, str], signed_again: bool) -> dict[str, str]:
    """The headers to forward: never one hop's; the handler's own signature only when it is not signed again."""
    dropped = HOP_HEADERS | SIGNATURE_HEADERS if signed_again else HOP_HEADERS
    return {k: v for k, v in headers.items() if k.lower() not in dropped}


@functools.cache
def _botocore() -> botocore.session.Session:
    """A botocore session for its data only (models, partitions): it reads no config or credentials file here."""
    return botocore.session.Session()


@functools.cache
def _regions() -> frozenset[str]:
    partitions = _botocore().get_data("endpoints")["partitions"]
    return frozenset(region for partition in partitions for region in partition["regions"])


def _model_name(service: str, path: str) -> str:
    """The service model a call with this signing name and path is for (Bedrock's runtime API for /model/ paths)."""
    if service == "bedrock" and path.startswith("/model/"):
        return "bedrock-runtime"
    return service


@functools.cache
def _resolved_endpoint(model: str, region: str) -> str:
    """botocore's own endpoint for a service model in region (no configured endpoint URL counts)."""
    config = Config(ignore_configured_endpoint_urls=True)  # type: ignore[call-arg]  # botocore >= 1.31; stubs lag
    client = _botocore().create_client(
        model, region_name=region, config=config, aws_access_key_id="x", aws_secret_access_key="x"
    )
    return str(client.meta.endpoint_url)


def aws_url(service: str, region: str, target: str, override: str) -> str:
    """The URL to send a call signed for service in region to; RefusedEndpoint unless both are AWS's own names and
    the URL is an amazonaws.com host of that service (or override, the user's own LOCAL_AWS_UPSTREAM, is set)."""
    if not NAME.fullmatch(service) or not NAME.fullmatch(region) or region not in _regions():
        raise RefusedEndpoint(f"service {service[:40]!r} in region {region[:40]!r} is not an AWS service and region")
    if not target.startswith("/"):
        raise RefusedEndpoint(f"the request target does not start with '/': {target[:60]!r}")
    if override:
        return override + target
    model = _model_name(service, target)
    try:
        metadata = _botocore().get_service_model(model).metadata
        endpoint = _resolved_endpoint(model, region)
    except (BotoCoreError, ValueError, KeyError) as err:
        raise RefusedEndpoint(f"botocore knows no service {service!r} in {region!r}") from err
    if service not in (metadata.get("signingName"), metadata.get("endpointPrefix")):
        raise RefusedEndpoint(f"a call signed for {service!r} is not one to {model!r}")
    url = endpoint + target
    expected, got = urlsplit(endpoint), urlsplit(url)
    host = got.hostname or ""
    prefix = str(metadata.get("endpointPrefix", model))
    if (
        got.scheme != "https"
        or got.netloc != expected.netloc
        or got.port is not None
        or got.username is not None
        or not host.endswith(AWS_HOST_SUFFIX)
        or not host.startswith(f"{prefix}.")
    ):
        raise RefusedEndpoint(f"{url[:80]!r} is not an {AWS_HOST_SUFFIX[1:]} host of {prefix}")
    return url


def user_credentials(profile: str | None) -> Credentials | None:
    """The user's own credentials (profile, else boto3's default chain), read only when a call is passed through."""
    return boto3.Session(profile_name=profile).get_credentials()


def signed(
    method: str, url: str, headers: Mapping[str, str], body: bytes, credentials: Credentials, service: str, region: str
) -> AWSRequest:
    """The request re-signed for service in region with credentials."""
    request = AWSRequest(method=method, url=url, data=body, headers=forwarded_headers(headers, signed_again=True))
    SigV4Auth(credentials, service, region).add_auth(request)
    return request


def send(method: str, url: str, headers: Mapping[str, str], body: bytes, cafile: str | None = None) -> Exchange:
    """Send one request through the user's own network (HTTP(S)_PROXY, NO_PROXY, SSL_CERT_FILE; cafile for AWS's
    AWS_CA_BUNDLE) and return the answer, an HTTP error status included; raise OSError when none came."""
    request = urllib.request.Request(url, data=body or None, headers=dict(headers), method=method)
    context = ssl.create_default_context(cafile=cafile or None)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))  # proxies from the environment
    try:
        with opener.open(request, timeout=TIMEOUT_S) as answer:
            status, answer_headers, data = answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as err:
        status, answer_headers, data = err.code, err.headers, err.read()
    kept = {k: v for k, v in answer_headers.items() if k.lower() not in DROPPED_ANSWER_HEADERS}
    return Exchange(status, kept, data)


def send_aws(request: AWSRequest) -> Exchange:
    """Send a signed AWS request, trusting AWS_CA_BUNDLE as botocore would."""
    body = request.body or b""
    data = body.encode("utf-8") if isinstance(body, str) else body
    cafile = os.environ.get("AWS_CA_BUNDLE")
    return send(str(request.method), str(request.url), dict(request.headers.items()), data, cafile)


def connect(host: str, port: int) -> socket.socket:
    """A TCP connection to host:port for a tunnel: through the user's https proxy (a CONNECT of its own) unless
    NO_PROXY exempts host, else direct."""
    proxy = urllib.request.getproxies().get("https")
    if not proxy or urllib.request.proxy_bypass(host):
        return socket.create_connection((host, port), timeout=TIMEOUT_S)
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    remote = socket.create_connection((parts.hostname or "", parts.port or 80), timeout=TIMEOUT_S)
    request = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        request += f"Proxy-Authorization: Basic {base64.b64encode(credentials).decode()}\r\n"
    remote.sendall(request.encode() + b"\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer and len(answer) < 65536:
        chunk = remote.recv(4096)
        if not chunk:
            break
        answer += chunk
    status = answer.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        remote.close()
        raise OSError(f"the proxy {parts.hostname}:{parts.port} refused CONNECT {host}:{port}: {status[1:2]!r}")
    return remote
