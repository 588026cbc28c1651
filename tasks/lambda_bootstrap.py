"""Child side of the local Lambda runtime: import a handler, call it with the event, write the outcome.

Run as `python -P lambda_bootstrap.py MODULE FUNCTION RESULT_PATH` with the event on stdin, inside the
environment the runtime built. Standard output and error are the function's log. Standard library only.
"""

import importlib
import json
import os
import resource
import sys
import threading
import time
import traceback


class LambdaContext:
    """The attributes of the context object handlers commonly use."""

    def __init__(self, deadline: float) -> None:
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.aws_request_id = os.environ["VECTORA_LOCAL_REQUEST_ID"]
        self.invoked_function_arn = os.environ["VECTORA_LOCAL_FUNCTION_ARN"]
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _error(err: BaseException, error_type: str) -> dict:
    frames = err.__traceback__.tb_next if err.__traceback__ else None  # hide this bootstrap's frame, as Lambda does
    print(f"[ERROR] {error_type}: {err}", file=sys.stderr)
    traceback.print_exception(type(err), err, frames, file=sys.stderr)
    return {
        "errorMessage": str(err),
        "errorType": error_type,
        "requestId": os.environ["VECTORA_LOCAL_REQUEST_ID"],
        "stackTrace": traceback.format_tb(frames),
    }


def _exit_with_parent() -> None:
    """End this process when the runtime that started it is gone (killed with -9): no orphan handler lives on."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(137)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    _exit_with_parent()
    module_name, function_name, result_path = sys.argv[1:4]
    deadline = time.monotonic() + float(os.environ["VECTORA_LOCAL_TIMEOUT"])
    event = json.loads(sys.stdin.read() or "{}")
    outcome: dict = {"ok": False}
    started = time.monotonic()
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except ImportError as err:
        outcome["payload"] = _error(err, "Runtime.ImportModuleError")
    except AttributeError as err:
        outcome["payload"] = _error(err, "Runtime.HandlerNotFound")
    else:
        outcome["init_ms"] = (time.monotonic() - started) * 1000
        called = time.monotonic()
        try:
            result = handler(event, LambdaContext(deadline))
        except Exception as err:  # noqa: BLE001 - a handler's error is the payload, as on AWS
            outcome["payload"] = _error(err, type(err).__name__)
        else:
            try:
                outcome["payload"] = json.loads(json.dumps(result))
                outcome["ok"] = True
            except (TypeError, ValueError) as err:
                outcome["payload"] = _error(err, "Runtime.MarshalError")
        outcome["duration_ms"] = (time.monotonic() - called) * 1000
    sys.stdout.flush()
    sys.stderr.flush()
    outcome["max_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(outcome, handle)


if __name__ == "__main__":
    main()
    # Like a Lambda sandbox, skip the interpreter's teardown (tens of ms with boto3 loaded): all output is written.
    os._exit(0)
