"""Forward a handler's request to the real service: AWS calls re-signed with the user's own credentials, web as is.

A handler only ever holds dummy keys; its SigV4 signature is dropped here and the request signed again (botocore's
SigV4Auth) with the credentials of the toolkit's own session, for the service and region the handler's signature named.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tasks.local.recordings import Exchange

# Headers that belong to one hop or to the handler's signature, never forwarded.
DROPPED_REQUEST_HEADERS = frozenset(
    {
        "authorization",
        "x-amz-date",
        "x-amz-security-token",
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
# boto3 signing name -> endpoint prefix, where they differ.
ENDPOINT_PREFIXES = {"ses": "email"}
TIMEOUT_S = 120


def forwarded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in DROPPED_REQUEST_HEADERS}


def aws_endpoint(service: str, region: str, path: str, override: str) -> str:
    """The real endpoint of a service (Bedrock's runtime API for /model/ paths), or override when one is set."""
    if override:
        return override
    if service == "bedrock":
        prefix = "bedrock-runtime" if path.startswith("/model/") else "bedrock"
    else:
        prefix = ENDPOINT_PREFIXES.get(service, service)
    return f"https://{prefix}.{region}.amazonaws.com"


def user_credentials(profile: str | None) -> Credentials | None:
    """The user's own credentials (profile, else boto3's default chain), read only when a call is passed through."""
    return boto3.Session(profile_name=profile).get_credentials()


def signed(
    method: str, url: str, headers: Mapping[str, str], body: bytes, credentials: Credentials, service: str, region: str
) -> AWSRequest:
    """The request re-signed for service in region with credentials."""
    request = AWSRequest(method=method, url=url, data=body, headers=forwarded_headers(headers))
    SigV4Auth(credentials, service, region).add_auth(request)
    return request


def send(method: str, url: str, headers: Mapping[str, str], body: bytes) -> Exchange:
    """Send one request and return the answer, an HTTP error status included; raise OSError when none came."""
    request = urllib.request.Request(url, data=body or None, headers=dict(headers), method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            status, answer_headers, data = answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as err:
        status, answer_headers, data = err.code, err.headers, err.read()
    kept = {k: v for k, v in answer_headers.items() if k.lower() not in DROPPED_ANSWER_HEADERS}
    return Exchange(status, kept, data)


def send_aws(request: AWSRequest) -> Exchange:
    body = request.body or b""
    data = body.encode("utf-8") if isinstance(body, str) else body
    return send(str(request.method), str(request.url), dict(request.headers.items()), data)
