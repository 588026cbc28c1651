"""The Lambda REST API of the embedded AWS, answering like Lambda for the toolkit, handlers and real clients.

Served: Invoke, GetFunction, GetFunctionConfiguration, ListFunctions (paged), ListVersionsByFunction ($LATEST only),
ListAliases / GetAlias (no aliases), GetFunctionConcurrency, ListTags (none) and GetAccountSettings. Every answer
carries `x-amzn-RequestId`; every error is Lambda's JSON error with `x-amzn-ErrorType`, unknown routes included.

Invoke: Event invocations are accepted (202) and run in the background, retried twice on error; DryRun runs nothing
(204); any other InvocationType is refused (400) and runs nothing; a body that is not JSON, or a bad Content-Length, is
400; over 6 MB (256 KB for Event) 413, chunked bodies included; a response over 6 MB a Function.ResponseSizeTooLarge
error; unknown functions, versions, aliases and ARNs of another account or region are 404; throttling is 429.
ListFunctions and ListVersionsByFunction show the variables' names with masked values (the env-vars file may hold
secrets); GetFunction(Configuration) shows them as Lambda does.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from tasks.local.lambda_service import LocalFunction, LocalLambdaRuntime, Throttled, parse_reference
from tasks.masking import MASK

# The Lambda REST API's paths start with one of its API versions (botocore's model lists them); among other AWS
# services only Lambda MicroVMs' tags share one. A path-style S3 request to a bucket named like one would be taken
# for Lambda's.
LAMBDA_VERSIONS = (
    "2014-11-13",
    "2015-03-31",
    "2016-08-19",
    "2017-03-31",
    "2017-10-31",
    "2018-10-31",
    "2019-09-25",
    "2019-09-30",
    "2020-04-22",
    "2020-06-30",
    "2021-07-20",
    "2021-10-31",
    "2021-11-15",
    "2024-08-31",
    "2025-11-30",
    "2025-12-01",
    "2026-07-09",
)
LAMBDA_PATH = re.compile(rf"^/(?:{'|'.join(LAMBDA_VERSIONS)})(?:/|$)")
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024  # Lambda's limit for a synchronous request and response
MAX_ASYNC_PAYLOAD = 256 * 1024
EVENT_RETRIES = 2  # Lambda retries a failed asynchronous invocation twice
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
PAGE_SIZE = 50  # ListFunctions answers at most 50 functions a call, whatever MaxItems asks
MAX_ITEMS = 10000
LATEST = "$LATEST"
# AWS's defaults for an account: GetAccountSettings' AccountLimit.
ACCOUNT_LIMIT = {
    "TotalCodeSize": 80530636800,
    "CodeSizeUnzipped": 262144000,
    "CodeSizeZipped": 52428800,
    "ConcurrentExecutions": 1000,
}


class LambdaError(Exception):
    """An error answer of the Lambda API: its status line, error type and message."""

    def __init__(self, status: str, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message

    def answer(self) -> Answer:
        body = json.dumps({"Type": "User", "message": self.message}).encode()
        return Answer(self.status, body, {"Content-Type": "application/json", "x-amzn-ErrorType": self.error_type})


def _not_found(message: str) -> LambdaError:
    return LambdaError("404 Not Found", "ResourceNotFoundException", message)


@dataclass(frozen=True)
class Answer:
    """A successful answer: status line, body and headers (the request id is added when sent)."""

    status: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, document: Any) -> Answer:
        return cls("200 OK", json.dumps(document).encode(), {"Content-Type": "application/json"})


@dataclass(frozen=True)
class Request:
    """One request to the Lambda API, with the path's named parts."""

    environ: dict[str, Any]
    parts: dict[str, str]

    def query(self, name: str) -> str | None:
        values = parse_qs(self.environ.get("QUERY_STRING", "")).get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The request body, at most limit bytes (else 413): by Content-Length, or to its end when sent chunked."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):  # chunked: the server ends the stream where the body ends
        chunks, size = [], 0
        while size <= limit and (chunk := stream.read(min(65536, limit + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
    else:
        declared = environ.get("CONTENT_LENGTH") or "0"
        if not (declared.isascii() and declared.isdigit()):
            message = f"Content-Length {declared[:20]!r} is not a number of bytes"
            raise LambdaError("400 Bad Request", "InvalidRequestContentException", message)
        size = int(declared)
        chunks = [stream.read(size)] if size <= limit else []  # a body too large is not read: the answer closes
    if size > limit:
        message = f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
        raise LambdaError("413 Request Entity Too Large", "RequestTooLargeException", message)
    return b"".join(chunks)


def send(start_response: Callable[..., Any], answer: Answer) -> list[bytes]:
    """Send answer, with a request id (its own, else a new one) as every AWS answer has."""
    headers = {"x-amzn-RequestId": str(uuid.uuid4()), **answer.headers, "Content-Length": str(len(answer.body))}
    start_response(answer.status, list(headers.items()))
    return [answer.body]


def error_response(start_response: Callable[..., Any], status: str, error_type: str, message: str) -> list[bytes]:
    """Lambda's JSON error answer (the server's refusals use it too)."""
    return send(start_response, LambdaError(status, error_type, message).answer())


Handler = Callable[["LambdaApi", Request], Answer]
ROUTES: list[tuple[str, re.Pattern[str], str, Handler]] = []  # method, path, operation (for messages), handler
FUNCTION = r"/2015-03-31/functions/(?P<function>[^/]+)"


def _route(method: str, pattern: str, operation: str) -> Callable[[Handler], Handler]:
    """Register the decorated method as the answer to method + path pattern."""

    def register(handler: Handler) -> Handler:
        ROUTES.append((method, re.compile(f"^{pattern}/?$"), operation, handler))
        return handler

    return register


class LambdaApi:
    """The Lambda REST API over the local runtime's functions (see the module's docstring for what it answers)."""

    def __init__(self, runtime: LocalLambdaRuntime, retry_delay_s: float = 1.0) -> None:
        self.runtime = runtime
        self.retry_delay_s = retry_delay_s

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        try:
            answer = self._answer(environ)
        except LambdaError as err:
            answer = err.answer()
        return send(start_response, answer)

    def _answer(self, environ: dict[str, Any]) -> Answer:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        for route_method, pattern, _, handler in ROUTES:
            match = pattern.match(path)
            if match and method == route_method:
                return handler(self, Request(environ, {k: unquote(v) for k, v in match.groupdict().items()}))
        served = ", ".join(sorted({operation for _, _, operation, _ in ROUTES}))
        raise LambdaError(
            "404 Not Found",
            "UnknownOperationException",
            f"{method} {path[:200]} is not an operation the local Lambda serves (it serves {served}; its functions are "
            "configured by the toolkit's settings)",
        )

    # Functions

    def _function(self, request: Request, qualified: bool = True) -> LocalFunction:
        """The function the request names (a name, a partial or full ARN): $LATEST only (else 404).

        qualified: whether the operation takes a qualifier (in the name or as Qualifier)."""
        reference = request.parts["function"]
        parsed = parse_reference(reference)
        if parsed is None:
            raise LambdaError(
                "400 Bad Request",
                "ValidationException",
                f"1 validation error detected: Value '{reference[:200]}' at 'functionName' failed to satisfy "
                "constraint: Member must be a function name, a partial ARN or an ARN",
            )
        function = self.runtime.find(reference)
        arn = parsed.arn(self.runtime.settings.region)
        if function is None:
            raise _not_found(f"Function not found: {arn}")
        qualifier = (request.query("Qualifier") or parsed.qualifier or LATEST) if qualified else LATEST
        if qualifier != LATEST:
            raise _not_found(f"Function not found: {arn}:{qualifier}")
        return function

    @_route("GET", "/2015-03-31/functions", "ListFunctions")
    def _list_functions(self, request: Request) -> Answer:
        max_items = self._max_items(request.query("MaxItems"))
        marker = request.query("Marker") or ""
        functions = sorted(self.runtime.functions(), key=lambda f: f.name)
        after = [f for f in functions if f.name > marker]
        page = after[: min(max_items, PAGE_SIZE)]
        document: dict[str, Any] = {"Functions": [self._listed(f) for f in page]}
        if len(after) > len(page):
            document["NextMarker"] = page[-1].name
        return Answer.json(document)

    @staticmethod
    def _max_items(value: str | None) -> int:
        if value is None:
            return PAGE_SIZE
        if not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_ITEMS):
            raise LambdaError(
                "400 Bad Request",
                "ValidationException",
                f"1 validation error detected: Value '{value[:20]}' at 'maxItems' failed to satisfy constraint: "
                f"Member must have value greater than or equal to 1 and less than or equal to {MAX_ITEMS}",
            )
        return int(value)

    def _listed(self, function: LocalFunction) -> dict[str, Any]:
        """The configuration as a listing shows it: variable names, values masked (they may be secrets)."""
        configuration = self.runtime.configuration(function)
        variables = configuration["Environment"]["Variables"]
        configuration["Environment"] = {"Variables": dict.fromkeys(variables, MASK)}
        return configuration

    @_route("GET", FUNCTION, "GetFunction")
    def _get_function(self, request: Request) -> Answer:
        function = self._function(request)
        return Answer.json(
            {
                "Configuration": self.runtime.configuration(function),
                "Code": {"RepositoryType": "Local"},
                "Concurrency": {"ReservedConcurrentExecutions": self.runtime.settings.local_lambda_concurrency},
            }
        )

    @_route("GET", FUNCTION + "/configuration", "GetFunctionConfiguration")
    def _get_configuration(self, request: Request) -> Answer:
        return Answer.json(self.runtime.configuration(self._function(request)))

    @_route("GET", FUNCTION + "/versions", "ListVersionsByFunction")
    def _list_versions(self, request: Request) -> Answer:
        return Answer.json({"Versions": [self._listed(self._function(request, qualified=False))]})

    @_route("GET", FUNCTION + "/aliases", "ListAliases")
    def _list_aliases(self, request: Request) -> Answer:
        self._function(request, qualified=False)
        return Answer.json({"Aliases": []})

    @_route("GET", FUNCTION + "/aliases/(?P<alias>[^/]+)", "GetAlias")
    def _get_alias(self, request: Request) -> Answer:
        function = self._function(request, qualified=False)
        raise _not_found(f"Cannot find alias arn: {self.runtime.arn(function)}:{request.parts['alias']}")

    @_route("GET", r"/2019-09-30/functions/(?P<function>[^/]+)/concurrency", "GetFunctionConcurrency")
    def _get_concurrency(self, request: Request) -> Answer:
        self._function(request, qualified=False)
        return Answer.json({"ReservedConcurrentExecutions": self.runtime.settings.local_lambda_concurrency})

    @_route("GET", r"/2017-03-31/tags/(?P<function>[^/]+)", "ListTags")
    def _list_tags(self, request: Request) -> Answer:
        self._function(request, qualified=False)
        return Answer.json({"Tags": {}})

    @_route("GET", "/2016-08-19/account-settings", "GetAccountSettings")
    def _account_settings(self, request: Request) -> Answer:
        functions = self.runtime.functions()
        reserved = self.runtime.settings.local_lambda_concurrency * len(functions)
        limit = {
            **ACCOUNT_LIMIT,
            "UnreservedConcurrentExecutions": max(0, ACCOUNT_LIMIT["ConcurrentExecutions"] - reserved),
        }
        code_size = sum(self.runtime.configuration(f)["CodeSize"] for f in functions)
        return Answer.json(
            {"AccountLimit": limit, "AccountUsage": {"TotalCodeSize": code_size, "FunctionCount": len(functions)}}
        )

    # Invoke

    @_route("POST", FUNCTION + "/invocations", "Invoke")
    def _invoke(self, request: Request) -> Answer:
        kind = request.header("X-Amz-Invocation-Type") or "RequestResponse"
        if kind not in INVOCATION_TYPES:
            message = f"Unsupported InvocationType {kind[:40]!r}: expected one of {', '.join(INVOCATION_TYPES)}"
            raise LambdaError("400 Bad Request", "InvalidParameterValueException", message)
        function = self._function(request)
        event = read_body(request.environ, MAX_ASYNC_PAYLOAD if kind == "Event" else MAX_SYNC_PAYLOAD) or b"{}"
        try:
            json.loads(event)
        except ValueError as err:
            message = f"Could not parse request body into json: {err}"
            raise LambdaError("400 Bad Request", "InvalidRequestContentException", message) from err
        if kind == "DryRun":
            return Answer("204 No Content")
        if kind == "Event":
            threading.Thread(target=self._run_event, args=(function, event), daemon=True).start()
            return Answer("202 Accepted")
        try:
            result = self.runtime.invoke(function, event)
        except Throttled as err:
            raise LambdaError("429 Too Many Requests", "TooManyRequestsException", "Rate Exceeded.") from err
        payload, error = result.payload, result.function_error
        if len(payload) > MAX_SYNC_PAYLOAD:
            payload, error = self._too_large(len(payload)), "Unhandled"
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": result.request_id}
        headers["X-Amz-Executed-Version"] = LATEST
        if error:
            headers["X-Amz-Function-Error"] = error
        if request.header("X-Amz-Log-Type") == "Tail":
            headers["X-Amz-Log-Result"] = result.log_tail_b64
        return Answer("200 OK", payload, headers)

    @staticmethod
    def _too_large(size: int) -> bytes:
        message = (
            f"Response payload size ({size} bytes) exceeded maximum allowed payload size ({MAX_SYNC_PAYLOAD} bytes)."
        )
        return json.dumps({"errorType": "Function.ResponseSizeTooLarge", "errorMessage": message}).encode()

    def _run_event(self, function: LocalFunction, event: bytes) -> None:
        """An asynchronous invocation: run it, and on error (or throttling) retry twice, waiting longer each time."""
        for attempt in range(EVENT_RETRIES + 1):
            try:
                if self.runtime.invoke(function, event).function_error is None:
                    return
            except Throttled:
                pass
            if attempt < EVENT_RETRIES:
                time.sleep(self.retry_delay_s * 2**attempt)
