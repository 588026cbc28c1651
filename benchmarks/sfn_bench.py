"""Clients through the local Step Functions against the sequential orchestrator, on one embedded AWS.

`python -m benchmarks.sfn_bench [--clients 1,3,10] [--runs 5] [--parallel 5]`: the generated state machine deployed
to the embedded AWS (moto's executor calling back into the local Lambda runtime), then, run by run in turn, one
execution for N clients (StartExecution, DescribeExecution until done) and the same N clients invoked step after step
by the toolkit's own invoke, N/parallel at a time in threads. Both must pass every client. A warm-up of each comes
first (cold starts). Prints the median wall time (and range) of each. `--smoke` runs 1 client once (the tests do).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.aws import clients as aws  # noqa: E402
from tasks.aws import state_machines  # noqa: E402
from tasks.flows import sfn_deploy  # noqa: E402
from tasks.local.server import EmbeddedAws, seed  # noqa: E402
from tasks.settings import STEPS, Settings, load_settings  # noqa: E402
from tasks.sfn import definition, templates  # noqa: E402


def _sequential(settings: Settings, factory: aws.ClientFactory, client_ids: list[str], parallel: int) -> None:
    """Each client's three steps invoked in order (the toolkit's invoke), parallel clients at a time."""
    lam = factory.lambda_(read_timeout=960)

    def one(client_id: str) -> None:
        for step in STEPS:
            answer = aws.invoke(lam, settings.function_name(step), {"client_id": client_id})
            if answer.function_error or answer.payload.get("statusCode") != 200:
                raise SystemExit(f"sequential: {client_id} {step} failed: {answer.payload}")

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, client_ids))


def _sfn(factory: aws.ClientFactory, arn: str, client_ids: list[str], run_id: str) -> None:
    sfn = factory.sfn()
    execution = state_machines.start_execution(sfn, arn, run_id, definition.execution_input(client_ids, {}, run_id))
    done = state_machines.wait(sfn, execution, timeout_s=600, poll_s=0.02)
    outcomes = json.loads(done.get("output") or "[]")
    if done["status"] != "SUCCEEDED" or any(o["status"] != "passed" for o in outcomes):
        raise SystemExit(f"sfn: {run_id} {done['status']}: {outcomes}")


def _seconds(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sfn_bench", description=__doc__)
    parser.add_argument("--clients", default="1,3,10", help="client counts, comma-separated")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="1 client, 1 run, no warm-up")
    args = parser.parse_args(argv)
    counts = [1] if args.smoke else [int(n) for n in args.clients.split(",")]
    runs = 1 if args.smoke else args.runs
    contexts = Path(tempfile.mkdtemp(prefix="sfn-bench-"))
    base = load_settings(
        ROOT, {"VECTORA_ENV": "local", "CONTEXTS_DIR": str(contexts)}, environ={"VECTORA_DOTENV": os.devnull}
    )
    with EmbeddedAws(base, envs=("dev",)).running() as endpoint:
        settings = load_settings(
            ROOT,
            {"VECTORA_ENV": "dev", "CONTEXTS_DIR": str(contexts), "AWS_ENDPOINT_URL": endpoint},
            environ={"VECTORA_DOTENV": os.devnull},
        )
        factory = aws.ClientFactory.local(settings.region, endpoint)
        seed(factory.s3(), settings, "dev")
        client_ids = [f"lai_weekly_v{n}" for n in range(1, max(counts) + 1)]
        config = (ROOT / "contexts" / "templates" / "lai_weekly.yaml").read_bytes()
        for client_id in client_ids:
            factory.s3().put_object(Bucket=settings.config_bucket(), Key=settings.config_key(client_id), Body=config)
        plan = sfn_deploy.plan(settings, factory.sfn(), args.parallel, templates.LOCAL_ROLE_ARN)
        arn = sfn_deploy.apply(factory.sfn(), plan)
        header = f"{'clients':<8} {'local Step Functions':<26} {'sequential orchestrator':<26}"
        print(f"{header} ratio (parallel {args.parallel})")
        for count in counts:
            chosen = client_ids[:count]
            if not args.smoke:  # cold starts and first clients out of the way
                _sfn(factory, arn, chosen, f"warm-{count}")
                _sequential(settings, factory, chosen, args.parallel)
            sfn_times, sequential_times = [], []
            for run in range(runs):
                sfn_times.append(_seconds(lambda: _sfn(factory, arn, chosen, f"run-{count}-{run}")))  # noqa: B023
                sequential_times.append(_seconds(lambda: _sequential(settings, factory, chosen, args.parallel)))  # noqa: B023
            ratio = statistics.median(sfn_times) / statistics.median(sequential_times)
            label = " (smoke)" if args.smoke else ""
            print(f"{count:<8} {_spread(sfn_times):<26} {_spread(sequential_times):<26} {ratio:.2f}{label}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
