"""A fault-injecting Lambda Invoke endpoint for tests, on 127.0.0.1, counting how many times each function ran.

Each function follows a script of behaviours (consumed in order, the last one repeating). A behaviour that "runs"
the function counts one execution; throttling, 5xx and access errors answer before anything runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.conftest import FIXTURES

STEP_OF = {"ingest": "ingest", "normalize-score": "normalize-score", "newsletter": "newsletter"}
# Failures the real handlers swallow, answering success: each writes what the real one writes in that case.
SWALLOWED = ("nothing_ingested", "bedrock_down", "stale_input", "nothing_selected")


def real(name: str) -> Any:
    """A file of the real pipeline's data (tests/fixtures), parsed."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def fallback(item: dict[str, Any]) -> dict[str, Any]:
    """A curated item as the real normalizer leaves it when Bedrock failed."""
    content = {
        "summary": "",
        "entities": {"companies": [], "molecules": [], "technologies": [], "trademarks": [], "indications": []},
        "event_classification": {"primary_type": "other", "confidence": 0.0},
        "normalization_metadata": {"bedrock_model": "fallback", "fallback_reason": "bedrock_failure"},
    }
    return {k: v for k, v in item.items() if k not in ("matching_results", "scoring_results")} | {
        "normalized_content": content
    }


class FaultLambda:
    """Serve Invoke and GetFunctionConfiguration for vectora-inbox-{step}-v2-{env} with scripted behaviours."""

    def __init__(self, s3: Any, env: str = "dev", timeout: int = 900) -> None:
        self.s3 = s3
        self.env = env
        self.timeout = timeout
        self.scripts: dict[str, list[str]] = {}
        self.executions: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []
        self.config_denied = False
        self.in_flight = 0
        self.max_in_flight = 0
        self.slow_seconds = 3.0
        self.gate: threading.Event | None = None  # when set, a "slow" function answers once the gate opens instead
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def name(self, step: str) -> str:
        return f"vectora-inbox-{step}-v2-{self.env}"

    def script(self, step: str, *behaviours: str) -> None:
        self.scripts[self.name(step)] = list(behaviours)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next(self, name: str) -> str:
        with self._lock:
            script = self.scripts.get(name, ["ok"])
            return script.pop(0) if len(script) > 1 else script[0]

    def _step(self, name: str) -> str | None:
        for step in STEP_OF:
            if name == self.name(step):
                return step
        return None

    def _outputs(self, step: str, event: dict[str, Any], behaviour: str = "ok") -> dict[str, Any]:
        """Write the step's outputs (the real pipeline's data) to S3 and answer like the real handler.

        behaviour may be a way the real handlers fail while answering success (README, "What a step passed means").
        """
        client_id = event["client_id"]
        today = datetime.now(UTC)
        day = today.strftime("%Y/%m/%d")
        data, newsletters = f"vectora-inbox-data-{self.env}", f"vectora-inbox-newsletters-{self.env}"

        def put(bucket: str, key: str, body: bytes) -> str:
            if behaviour == "empty_outputs":
                body = b""
            self.s3.put_object(Bucket=bucket, Key=key, Body=body)
            return f"s3://{bucket}/{key}"

        if step == "ingest":
            items = [] if behaviour == "nothing_ingested" else real("data/ingested_items.json")
            key = f"ingested/{client_id}/{day}/items.json"
            if not event.get("dry_run"):
                put(data, key, json.dumps(items).encode())
            if behaviour == "stale_input":  # a leftover folder dated after this run's: normalize reads it
                tomorrow = (today + timedelta(days=1)).strftime("%Y/%m/%d")
                put(data, f"ingested/{client_id}/{tomorrow}/items.json", json.dumps(items).encode())
            answer = real("responses/ingest_ok.json")["body"] | {"client_id": client_id}
            failed = answer["sources_processed"] + answer["sources_failed"] if not items else answer["sources_failed"]
            return answer | {
                "sources_processed": answer["sources_processed"] if items else 0,
                "sources_failed": failed,
                "items_ingested": len(items) + 1 if items else 0,
                "items_final": len(items),
                "s3_output_path": f"s3://{data}/{key}",
                "dry_run": bool(event.get("dry_run")),
            }
        if step == "normalize-score":
            folders = sorted(
                o["Key"].rsplit("/", 1)[0]
                for o in self.s3.list_objects_v2(Bucket=data, Prefix=f"ingested/{client_id}/").get("Contents", [])
            )
            read = folders[-1] if folders else f"ingested/{client_id}/{day}"
            curated = real("data/curated_items.json")
            if behaviour == "bedrock_down":
                curated = [fallback(item) for item in curated]
            key = read.replace("ingested/", "curated/", 1) + "/items.json"
            put(data, key, json.dumps(curated).encode())
            answer = real("responses/normalize_score_ok.json")["body"] | {"client_id": client_id}
            if behaviour == "bedrock_down":
                zeros = dict.fromkeys(answer["statistics"]["entity_statistics"], 0)
                statistics = answer["statistics"] | {"entity_statistics": zeros}
                answer = answer | {"statistics": statistics}
            return answer | {"last_run_path": read, "output_path": key}
        target = event.get("target_date") or today.strftime("%Y-%m-%d")
        prefix = f"{client_id}/{target.replace('-', '/')}"
        selected = 0 if behaviour == "nothing_selected" else 3
        document = real("outputs/newsletter.json")
        document["metrics"]["total_items"] = selected
        manifest = real("outputs/manifest.json") | {"target_date": target, "total_items": selected}
        markdown = (FIXTURES / "outputs" / "newsletter.md").read_bytes() if selected else b"# 0 signals\n"
        paths = {
            "markdown": put(newsletters, f"{prefix}/newsletter.md", markdown),
            "json": put(newsletters, f"{prefix}/newsletter.json", json.dumps(document).encode()),
            "manifest": put(newsletters, f"{prefix}/manifest.json", json.dumps(manifest).encode()),
        }
        return {"status": "success", "target_date": target, "items_selected": selected, "s3_paths": paths}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fault = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, code: str, message: str) -> None:
                self._send(status, {"message": message}, {"x-amzn-ErrorType": code})

            def do_GET(self) -> None:
                name = self.path.split("/")[3]
                if fault._step(name) is None:
                    return self._error(404, "ResourceNotFoundException", f"Function not found: {name}")
                if fault.config_denied:
                    return self._error(403, "AccessDeniedException", "not authorized")
                self._send(
                    200,
                    {
                        "FunctionName": name,
                        "Timeout": fault.timeout,
                        "MemorySize": 1024,
                        "CodeSha256": "c2hhMjU2LW9mLWNvZGU=",
                        "Version": "$LATEST",
                        "LastModified": "2026-11-01T10:00:00.000+0000",
                    },
                )

            def do_POST(self) -> None:
                name = self.path.split("/")[3]
                event = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                fault.requests[name] += 1
                step = fault._step(name)
                if step is None:
                    return self._error(404, "ResourceNotFoundException", f"Function not found: {name}")
                behaviour = fault._next(name)
                if behaviour == "throttle":
                    return self._error(429, "TooManyRequestsException", "Rate exceeded")
                if behaviour == "service_error":
                    return self._error(500, "ServiceException", "internal error")
                if behaviour == "denied":
                    return self._error(403, "AccessDeniedException", "not authorized to invoke")
                if behaviour == "expired":
                    return self._error(
                        403, "ExpiredTokenException", "The security token included in the request is expired"
                    )
                fault.executions[name] += 1
                fault.events.append({"function": name, **event})
                if behaviour == "reset":
                    self.connection.shutdown(2)
                    self.close_connection = True
                    return None
                if behaviour == "slow":
                    with fault._lock:
                        fault.in_flight += 1
                        fault.max_in_flight = max(fault.max_in_flight, fault.in_flight)
                    if fault.gate is not None:
                        fault.gate.wait(60)
                    else:
                        time.sleep(fault.slow_seconds)
                    with fault._lock:
                        fault.in_flight -= 1
                payload: Any
                error = None
                if behaviour in ("ok", "slow", *SWALLOWED, "empty_outputs"):
                    payload = {"statusCode": 200, "body": fault._outputs(step, event, behaviour)}
                elif behaviour == "no_outputs":
                    payload = {"statusCode": 200, "body": {"status": "success", "items_final": 1}}
                elif behaviour == "unhandled":
                    payload = {
                        "errorMessage": "Unable to import module 'handler': No module named 'requests'",
                        "errorType": "Runtime.ImportModuleError",
                        "requestId": "",
                        "stackTrace": [],
                    }
                    error = "Unhandled"
                elif behaviour == "lambda_timeout":
                    payload = {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 900.00 seconds"}
                    error = "Unhandled"
                elif behaviour == "status_error":
                    payload = {"statusCode": 200, "body": {"status": "error", "error": "all sources failed"}}
                elif behaviour == "status_500":
                    payload = {"statusCode": 500, "body": {"error": "ValueError", "message": "boom"}}
                elif behaviour == "deep":  # an answer nested 30,000 deep: more than any JSON walk can recurse
                    payload = b"[" * 30000 + b"]" * 30000
                elif behaviour == "no_items":
                    payload = {"statusCode": 200, "body": {"status": "no_items", "items_selected": 0}}
                else:
                    raise AssertionError(f"unknown behaviour {behaviour}")
                headers = {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": f"req-{step}"}
                if error:
                    headers["X-Amz-Function-Error"] = error
                return self._send(200, payload, headers)

        return Handler
