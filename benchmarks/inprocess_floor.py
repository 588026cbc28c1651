"""The in-process floor of a local run: the same work as `make local-e2e`, minus the toolkit, in one process.

`python -m benchmarks.inprocess_floor --client-id ID` (with CONTEXTS_DIR): moto's server on 127.0.0.1 (with the same
sample feeds and Bedrock stub, served by the embedded server's own `Services` so the handlers get the same answers),
the same buckets and canonical files (the embedded server's `seed`), the context's config uploaded, then the three
sample handlers imported and called in turn in this process, each with the event and the environment the local
runtime gives it. No Lambda runtime, no execution environments, no checks, no records, no reports: what a person
would write by hand to run the pipeline once. Like the toolkit it skips the interpreter's teardown.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from tasks.contexts.store import ContextStore
from tasks.local.lambda_service import LocalLambdaRuntime
from tasks.local.server import QuietRequestHandler, seed
from tasks.local.services import Services
from tasks.settings import STEPS, HandlerSpec, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def serve(settings: Settings) -> str:
    """moto's server with the sample feeds and the Bedrock stub in front, in a thread; its endpoint."""
    moto_app = DomainDispatcherApplication(create_backend_app)
    services = Services(settings)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return (services if services.claims(environ) else moto_app)(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.port}"


def load_handler(step: str, spec: HandlerSpec, layers: Iterable[Path]) -> Callable[[dict[str, Any], Any], Any]:
    """The step's handler function, imported from its source folder (with the layers importable, as on Lambda)."""
    for folder in (*layers, spec.source_dir):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    location = importlib.util.spec_from_file_location(f"{step}_handler", spec.source_dir / f"{spec.module}.py")
    assert location is not None and location.loader is not None
    module: ModuleType = importlib.util.module_from_spec(location)
    location.loader.exec_module(module)
    return getattr(module, spec.function)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inprocess_floor", description=__doc__)
    parser.add_argument("--client-id", required=True)
    client_id = parser.parse_args(argv).client_id
    settings = load_settings(ROOT, {"VECTORA_ENV": "local"})
    endpoint = serve(settings)
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name=settings.region, aws_access_key_id="x", aws_secret_access_key="x"
    )
    seed(s3, settings, "local")
    config = ContextStore(settings.contexts_dir).load(client_id).config_path.read_bytes()
    s3.put_object(Bucket=settings.config_bucket(), Key=settings.config_key(client_id), Body=config)
    runtime = LocalLambdaRuntime(settings, endpoint)
    for step in STEPS:
        function = runtime.find(settings.function_name(step))
        assert function is not None
        os.environ.clear()
        os.environ.update(runtime.environment(function))
        handler = load_handler(step, function.handler, settings.local_lambda_layers)
        answer = handler({"client_id": client_id}, SimpleNamespace(function_name=function.name))
        if answer.get("statusCode") != 200:
            raise SystemExit(f"{step} failed: {answer}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
