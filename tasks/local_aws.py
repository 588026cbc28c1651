"""The embedded AWS: moto's S3 and the local Lambda runtime behind the Invoke API, on one loopback port.

Requests under /2015-03-31/functions/ (the Lambda REST API) go to the local runtime; everything else goes to
moto's server. So one AWS_ENDPOINT_URL serves both, and the same boto3 code runs here and on AWS.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from tasks.aws import aws_errors
from tasks.errors import EnvironmentProblem
from tasks.local_lambda import LocalLambdaRuntime
from tasks.local_services import Services
from tasks.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LAMBDA_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)(?P<rest>/invocations|/configuration)?/?$")
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class QuietRequestHandler(MotoRequestHandler):
    """moto's request handler without a line on stderr for every request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _respond(start_response: Callable[..., Any], status: str, body: bytes, headers: dict[str, str]) -> list[bytes]:
    start_response(status, [("Content-Length", str(len(body))), *headers.items()])
    return [body]


class LambdaApi:
    """The part of the Lambda REST API the toolkit uses: Invoke, GetFunction and GetFunctionConfiguration."""

    def __init__(self, runtime: LocalLambdaRuntime) -> None:
        self.runtime = runtime

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        match = LAMBDA_PATH.match(environ.get("PATH_INFO", ""))
        assert match is not None
        name = unquote(match["name"])
        function = self.runtime.find(name)
        json_type = {"Content-Type": "application/json"}
        if function is None:
            body = json.dumps({"Type": "User", "message": f"Function not found: {name}"}).encode()
            return _respond(
                start_response, "404 Not Found", body, {**json_type, "x-amzn-ErrorType": "ResourceNotFoundException"}
            )
        method, rest = environ["REQUEST_METHOD"], match["rest"]
        if method == "GET" and rest == "/configuration":
            return _respond(
                start_response, "200 OK", json.dumps(self.runtime.configuration(function)).encode(), json_type
            )
        if method == "GET" and rest is None:
            document = {"Configuration": self.runtime.configuration(function), "Code": {"RepositoryType": "Local"}}
            return _respond(start_response, "200 OK", json.dumps(document).encode(), json_type)
        if method == "POST" and rest == "/invocations":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            event = environ["wsgi.input"].read(length) if length else b"{}"
            result = self.runtime.invoke(function, event)
            headers = {**json_type, "x-amzn-RequestId": result.request_id, "X-Amz-Executed-Version": "$LATEST"}
            if result.function_error:
                headers["X-Amz-Function-Error"] = result.function_error
            if environ.get("HTTP_X_AMZ_LOG_TYPE") == "Tail":
                headers["X-Amz-Log-Result"] = result.log_tail_b64
            return _respond(start_response, "200 OK", result.payload, headers)
        body = json.dumps({"message": f"{method} {environ.get('PATH_INFO')} is not supported locally"}).encode()
        return _respond(
            start_response, "400 Bad Request", body, {**json_type, "x-amzn-ErrorType": "InvalidRequestContentException"}
        )


def dispatcher(lambda_api: WsgiApp, moto_app: WsgiApp, services: Services) -> WsgiApp:
    """One WSGI app: the Lambda API's paths to lambda_api, other AWS services and the web to services, S3 to moto."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if LAMBDA_PATH.match(environ.get("PATH_INFO", "")):
            return lambda_api(environ, start_response)
        if services.claims(environ):  # issue 10: services (tasks/local_services.py)
            return services(environ, start_response)
        return moto_app(environ, start_response)

    return app


class EmbeddedAws:
    """The embedded AWS on 127.0.0.1; port 0 picks a free port. Use as a context manager or start()/stop()."""

    def __init__(self, settings: Settings, port: int = 0) -> None:
        self.settings = settings
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._runtime: LocalLambdaRuntime | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.port}"

    def start(self) -> str:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_app = DomainDispatcherApplication(create_backend_app)
        # Bind the socket ourselves: werkzeug would print and sys.exit() on a port in use.
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
        with listener:
            self._server = make_server(
                "127.0.0.1",
                self.port,
                moto_app,
                threaded=True,
                request_handler=QuietRequestHandler,
                fd=listener.fileno(),
            )
        # The runtime needs the endpoint, known only once the port is bound.
        self._runtime = LocalLambdaRuntime(self.settings, self.endpoint)
        self.services = Services(self.settings)  # issue 10: services; notes() says what was stubbed, replayed...
        self._server.app = dispatcher(LambdaApi(self._runtime), moto_app, self.services)
        # A short poll interval makes stop() take milliseconds instead of half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="embedded-aws", daemon=True
        )
        self._thread.start()
        self._reset_moto()
        return self.endpoint

    def _reset_moto(self) -> None:
        """Start from an empty S3: moto keeps its state per process."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST", data=b"")
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
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
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
