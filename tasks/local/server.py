"""The embedded AWS: moto's S3 and the local Lambda runtime behind the Lambda API, on one loopback port.

Requests to the Lambda REST API's paths (lambda_api.py) go to the local runtime; everything else goes to
moto's server. So one AWS_ENDPOINT_URL serves both, and the same boto3 code runs here and on AWS.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tasks.aws.clients import aws_errors
from tasks.errors import EnvironmentProblem
from tasks.local import request_guard
from tasks.local.execution_env import remove_orphan_folders
from tasks.local.lambda_api import LAMBDA_PATH, LambdaApi
from tasks.local.lambda_api import error_response as _error
from tasks.local.lambda_service import LocalLambdaRuntime
from tasks.local.services import Services
from tasks.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
LOGGER = logging.getLogger(__name__)


class QuietRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler without a line on stderr for every request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def dispatcher(lambda_api: WsgiApp, moto_app: WsgiApp, services: Services, port: int, admin_token: str) -> WsgiApp:
    """One WSGI app for the server's own clients only (request_guard.py): a function's web requests and other AWS
    services to services, the Lambda API's paths to lambda_api, S3 to moto."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        refused = request_guard.refusal(environ, port, admin_token)
        if refused is not None:
            LOGGER.warning("embedded AWS: %s %s", environ.get("REQUEST_METHOD"), refused)
            return _error(start_response, "403 Forbidden", "AccessDeniedException", refused)
        if services.claims(environ):
            return services(environ, start_response)
        if LAMBDA_PATH.match(environ.get("PATH_INFO", "")):
            return lambda_api(environ, start_response)
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
        self.admin_token = secrets.token_urlsafe(24)  # moto's admin routes answer only this server's owner
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
        lambda_api = LambdaApi(self._runtime, retry_delay)
        self._server.app = dispatcher(lambda_api, moto_app, self.services, self._server.port, self.admin_token)
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
        self.admin("/moto-api/reset")
        self.admin("/moto-api/config", json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode())

    def admin(self, path: str, body: bytes = b"") -> bytes:
        """POST to one of moto's admin routes (path under /moto-api/) with this server's token; the answer's body."""
        headers = {request_guard.ADMIN_TOKEN_HEADER: self.admin_token}
        request = urllib.request.Request(f"{self.endpoint}{path}", method="POST", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as answer:
            return bytes(answer.read())

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
