"""The embedded AWS: moto's S3 and the local Lambda runtime behind the Invoke API, on one loopback port.

Requests under /2015-03-31/functions/ (the Lambda REST API) go to the local runtime; everything else goes to
moto's server. So one AWS_ENDPOINT_URL serves both, and the same boto3 code runs here and on AWS.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tasks.aws.clients import aws_errors
from tasks.errors import EnvironmentProblem
from tasks.local.execution_env import remove_orphan_folders
from tasks.local.lambda_service import LocalFunction, LocalLambdaRuntime, Throttled
from tasks.local.services import Services
from tasks.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LAMBDA_PATH = re.compile(r"^/2015-03-31/functions(?:/(?P<name>[^/]+)(?P<rest>/invocations|/configuration)?)?/?$")
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024  # Lambda's limit for a synchronous request and response
MAX_ASYNC_PAYLOAD = 256 * 1024
EVENT_RETRIES = 2  # Lambda retries a failed asynchronous invocation twice


class QuietRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler without a line on stderr for every request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _respond(start_response: Callable[..., Any], status: str, body: bytes, headers: dict[str, str]) -> list[bytes]:
    start_response(status, [("Content-Length", str(len(body))), *headers.items()])
    return [body]


def _error(start_response: Callable[..., Any], status: str, error_type: str, message: str) -> list[bytes]:
    body = json.dumps({"Type": "User", "message": message}).encode()
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": error_type,
        "x-amzn-RequestId": str(uuid.uuid4()),
    }
    return _respond(start_response, status, body, headers)


class LambdaApi:
    """The Lambda REST API as the toolkit and handlers use it: Invoke, GetFunction(Configuration), ListFunctions.

    Answers like Lambda: Event invocations are accepted (202) and run in the background, retried twice on error;
    DryRun runs nothing (204); a body that is not JSON is 400, over 6 MB 413, a response over 6 MB a
    Function.ResponseSizeTooLarge error; unknown functions, versions and aliases are 404; throttling is 429.
    """

    def __init__(self, runtime: LocalLambdaRuntime, retry_delay_s: float = 1.0) -> None:
        self.runtime = runtime
        self.retry_delay_s = retry_delay_s

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        match = LAMBDA_PATH.match(environ.get("PATH_INFO", ""))
        assert match is not None
        method, rest = environ["REQUEST_METHOD"], match["rest"]
        json_type = {"Content-Type": "application/json"}
        if match["name"] is None:
            if method != "GET":
                return _error(start_response, "400 Bad Request", "InvalidRequestContentException", "unsupported")
            functions = [self.runtime.configuration(f) for f in self.runtime.functions()]
            return _respond(start_response, "200 OK", json.dumps({"Functions": functions}).encode(), json_type)
        name, _, alias = unquote(match["name"]).rsplit(":function:", 1)[-1].partition(":")
        qualifier = parse_qs(environ.get("QUERY_STRING", "")).get("Qualifier", [alias])[0] or "$LATEST"
        function = self.runtime.find(name)
        if function is None or qualifier != "$LATEST":
            shown = f"{name}:{qualifier}" if function is not None else name
            return _error(start_response, "404 Not Found", "ResourceNotFoundException", f"Function not found: {shown}")
        if method == "GET" and rest == "/configuration":
            return _respond(
                start_response, "200 OK", json.dumps(self.runtime.configuration(function)).encode(), json_type
            )
        if method == "GET" and rest is None:
            document = {"Configuration": self.runtime.configuration(function), "Code": {"RepositoryType": "Local"}}
            return _respond(start_response, "200 OK", json.dumps(document).encode(), json_type)
        if method == "POST" and rest == "/invocations":
            return self._invoke(function, environ, start_response)
        return _error(
            start_response,
            "400 Bad Request",
            "InvalidRequestContentException",
            f"{method} {environ.get('PATH_INFO')} is not supported locally",
        )

    def _invoke(
        self, function: LocalFunction, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> list[bytes]:
        kind = environ.get("HTTP_X_AMZ_INVOCATION_TYPE", "RequestResponse")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        limit = MAX_ASYNC_PAYLOAD if kind == "Event" else MAX_SYNC_PAYLOAD
        if length > limit:
            message = f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
            return _error(start_response, "413 Request Entity Too Large", "RequestTooLargeException", message)
        event = environ["wsgi.input"].read(length) if length else b"{}"
        try:
            json.loads(event)
        except ValueError as err:
            message = f"Could not parse request body into json: {err}"
            return _error(start_response, "400 Bad Request", "InvalidRequestContentException", message)
        if kind == "DryRun":
            return _respond(start_response, "204 No Content", b"", {})
        if kind == "Event":
            threading.Thread(target=self._run_event, args=(function, event), daemon=True).start()
            return _respond(start_response, "202 Accepted", b"", {"x-amzn-RequestId": str(uuid.uuid4())})
        try:
            result = self.runtime.invoke(function, event)
        except Throttled:
            message = "Rate Exceeded."
            return _error(start_response, "429 Too Many Requests", "TooManyRequestsException", message)
        payload, error = result.payload, result.function_error
        if len(payload) > MAX_SYNC_PAYLOAD:
            payload, error = self._too_large(len(payload)), "Unhandled"
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": result.request_id}
        headers["X-Amz-Executed-Version"] = "$LATEST"
        if error:
            headers["X-Amz-Function-Error"] = error
        if environ.get("HTTP_X_AMZ_LOG_TYPE") == "Tail":
            headers["X-Amz-Log-Result"] = result.log_tail_b64
        return _respond(start_response, "200 OK", payload, headers)

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


def dispatcher(lambda_api: WsgiApp, moto_app: WsgiApp, services: Services) -> WsgiApp:
    """One WSGI app: the Lambda API's paths to lambda_api, other AWS services and the web to services, S3 to moto."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if LAMBDA_PATH.match(environ.get("PATH_INFO", "")):
            return lambda_api(environ, start_response)
        if services.claims(environ):
            return services(environ, start_response)
        return moto_app(environ, start_response)

    return app


class EmbeddedAws:
    """The embedded AWS on 127.0.0.1; port 0 picks a free port. Use as a context manager or start()/stop()."""

    def __init__(
        self, settings: Settings, port: int = 0, envs: Iterable[str] = ("local",), preload: bool = False
    ) -> None:
        """preload: start the functions' zygotes at once (a run is about to invoke them), before importing moto."""
        self.settings = settings
        self.port = port
        self.envs = tuple(envs)
        self.preload = preload
        self.services: Services  # set by start(): what a run's handlers called beyond S3 (its notes())
        self._server: BaseWSGIServer | None = None
        self._runtime: LocalLambdaRuntime | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def runtime(self) -> LocalLambdaRuntime:
        assert self._runtime is not None, "start() first"
        return self._runtime

    def start(self) -> str:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)  # logs each path IsPresent misses
        remove_orphan_folders(Path(tempfile.gettempdir()))
        listener = self._listen()
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"  # the runtime needs it, moto's app does not
        try:  # a bad env-vars file or service mode: free the port (and end the zygotes) before saying so
            self._runtime = LocalLambdaRuntime(self.settings, endpoint, self.envs)
            if self.preload:
                self._runtime.preload(self._runtime.functions())
            self.services = Services(self.settings)
            from moto.server import DomainDispatcherApplication, create_backend_app  # ~0.2 s: the zygotes start first

            moto_app = DomainDispatcherApplication(create_backend_app)
            with listener:
                self._server = make_server(
                    "127.0.0.1",
                    self.port,
                    moto_app,
                    threaded=True,
                    request_handler=QuietRequestHandler,
                    fd=listener.fileno(),
                )
        except BaseException:
            listener.close()
            if self._runtime is not None:
                self._runtime.kill_all()
                self._runtime = None
            raise
        retry_delay = self.settings.local_event_retry_delay
        self._server.app = dispatcher(LambdaApi(self._runtime, retry_delay), moto_app, self.services)
        # A short poll interval makes stop() take milliseconds instead of half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="embedded-aws", daemon=True
        )
        self._thread.start()
        try:
            self._reset_moto()
        except BaseException:
            self.stop()
            raise
        return self.endpoint

    def _listen(self) -> socket.socket:
        """The listening socket on 127.0.0.1:port, bound here: werkzeug would print and sys.exit() on a port in use."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
        except OSError as err:
            listener.close()
            raise EnvironmentProblem(
                f"cannot listen on 127.0.0.1:{self.port} ({err.strerror}): choose another port or stop what uses it"
            ) from err
        return listener

    def _reset_moto(self) -> None:
        """Start from an empty S3: moto keeps its state per process. Turn on moto's Step Functions executor, whose
        Lambda tasks call boto3 at localhost:$MOTO_PORT: this server (one per process, as moto's state is)."""
        os.environ["MOTO_PORT"] = self.endpoint.rsplit(":", 1)[1]
        config = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()
        for path, body in (("/moto-api/reset", b""), ("/moto-api/config", config)):
            request = urllib.request.Request(f"{self.endpoint}{path}", method="POST", data=body)
            with urllib.request.urlopen(request, timeout=10):
                pass

    def stop(self) -> None:
        """Stop serving, kill any handler still running, and free the port."""
        if self._runtime is not None:
            self._runtime.kill_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @contextmanager
    def running(self) -> Iterator[str]:
        """Start, yield the endpoint URL, and always stop."""
        self.start()
        try:
            yield self.endpoint
        finally:
            self.stop()


def create_buckets(s3: S3Client, buckets: Iterable[str], region: str) -> None:
    """Create each bucket (in region) unless it exists."""
    location: dict[str, Any] = (
        {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    )
    for bucket in buckets:
        try:
            s3.create_bucket(Bucket=bucket, **location)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass


def seed(s3: S3Client, settings: Settings, env: str) -> None:
    """Create env's three buckets and upload the sample pipeline's canonical files to its config bucket."""
    with aws_errors("seed the embedded S3", f"env {env}"):
        buckets = [settings.config_bucket(env), settings.data_bucket(env), settings.newsletters_bucket(env)]
        create_buckets(s3, buckets, settings.region)
        upload_canonical(s3, settings.local_canonical_dir, settings.config_bucket(env))


def upload_canonical(s3: S3Client, folder: Path, bucket: str) -> int:
    """Upload the sample pipeline's canonical files under canonical/ in the config bucket; return how many."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        s3.put_object(Bucket=bucket, Key=f"canonical/{path.relative_to(folder).as_posix()}", Body=path.read_bytes())
    return len(files)
