"""Measure the toolkit's overhead against floors measured side by side, and print ratios with PASS/FAIL.

`make bench` (or `python -m benchmarks.bench`) runs every target several times and takes medians, because absolute
times drift on a shared machine. `--smoke` runs each once on small inputs and judges nothing (the test suite does it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
SAFE = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass(frozen=True)
class Row:
    """One target: what was measured, against what, and the verdict."""

    target: str
    measured: str
    baseline: str
    ratio: float | None
    goal: str
    passed: bool | None


def environ(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAKE")) and k != "VECTORA_ENV"}
    return keep | SAFE | extra


def timed(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> float:
    """Wall seconds of one command, which must succeed."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"benchmark command failed ({result.returncode}): {' '.join(command)}\n{result.stderr}")
    return elapsed


def median(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


@contextmanager
def contexts_folder() -> Iterator[Path]:
    """A scratch contexts folder with the committed templates, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="vectora-bench-") as tmp:
        folder = Path(tmp) / "contexts"
        shutil.copytree(ROOT / "contexts" / "templates", folder / "templates")
        yield folder


def warm_local_e2e(runs: int) -> list[Row]:
    """Targets 1: a warm `make local-e2e` against the handlers' own time and against a floor of bare imports."""
    with contexts_folder() as folder:
        env = environ(CONTEXTS_DIR=str(folder))
        subprocess.run(["make", "-s", "local-e2e"], cwd=ROOT, env=env, capture_output=True, check=True)
        walls, overheads = [], []
        for _ in range(runs):
            walls.append(timed(["make", "-s", "local-e2e", "CLIENT_ID=lai_weekly_v1"], env))
            runs_dir = folder / "lai_weekly_v1" / "runs"
            newest = max(runs_dir.iterdir(), key=lambda p: p.name)
            steps = json.loads((newest / "run.json").read_text())["steps"]
            handlers = sum((s["duration_ms"] or 0) + (s["init_duration_ms"] or 0) for s in steps) / 1000
            overheads.append(walls[-1] - handlers)

    def floor() -> float:
        total = timed([PYTHON, "-c", "import boto3, moto.server"], environ())
        return total + sum(timed([PYTHON, "-c", "import boto3"], environ()) for _ in range(3))

    wall, overhead, floor_s = statistics.median(walls), statistics.median(overheads), median(runs, floor)
    return [
        Row(
            "1a warm local-e2e overhead",
            f"{overhead:.2f} s",
            f"handlers {wall - overhead:.2f} s",
            None,
            "<= 1.5 s beyond the handlers",
            overhead <= 1.5,
        ),
        Row(
            "1b warm local-e2e vs floor",
            f"{wall:.2f} s",
            f"floor {floor_s:.2f} s",
            wall / floor_s,
            "ratio <= 2.5",
            wall / floor_s <= 2.5,
        ),
    ]


def session_overhead(runs: int) -> list[Row]:
    """Target 2: a warm nox session against the same task run directly."""
    env = environ()
    direct = median(runs, lambda: timed([PYTHON, "-m", "tasks", "aws-e2e", "--help"], env))
    session = median(runs, lambda: timed([PYTHON, "-m", "nox", "--non-interactive", "-s", "e2e", "--", "--help"], env))
    return [
        Row(
            "2 nox session overhead",
            f"{session:.2f} s",
            f"direct {direct:.2f} s",
            session / direct,
            "<= 0.4 s more",
            session - direct <= 0.4,
        )
    ]


def first_run() -> list[Row]:
    """Target 3: the first `make local-e2e` in a fresh clone, with an empty package cache (network installs)."""
    with tempfile.TemporaryDirectory(prefix="vectora-clone-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = environ(UV_CACHE_DIR=str(Path(tmp) / "uv-cache"))
        wall = timed(["make", "-s", "local-e2e"], env, cwd=clone)
    return [Row("3 first local-e2e, fresh clone", f"{wall:.1f} s", "-", None, "< 60 s", wall < 60)]


def parallel_clients(clients: int, delay: float) -> list[Row]:
    """Target 4: many clients on a Lambda endpoint that takes `delay` per step, one by one and all at once."""
    from tasks.aws import clients as aws
    from tasks.contexts.store import ContextStore
    from tasks.local.server import EmbeddedAws, seed
    from tasks.settings import DOTENV_VARIABLE, load_settings
    from tests.fault_lambda import FaultLambda

    with contexts_folder() as folder:
        settings = load_settings(
            ROOT,
            {"VECTORA_ENV": "local", "CONTEXTS_DIR": str(folder)},
            environ={DOTENV_VARIABLE: os.environ.get(DOTENV_VARIABLE, "")},  # the tests' VECTORA_DOTENV counts
        )
        with EmbeddedAws(settings).running() as endpoint:
            s3 = aws.ClientFactory.local(settings.region, endpoint).s3()
            seed(s3, settings, "dev")
            fault = FaultLambda(s3)
            fault.slow_seconds = delay
            for step in ("ingest", "normalize-score", "newsletter"):
                fault.script(step, "slow")
            store = ContextStore(folder)
            ids = []
            for n in range(clients):
                context = store.create("lai_weekly", f"bench client {n}", datetime.now(UTC))
                s3.put_object(
                    Bucket="vectora-inbox-config-dev",
                    Key=f"clients/{context.client_id}.yaml",
                    Body=context.config_path.read_bytes(),
                )
                ids.append(context.client_id)
            env = environ(
                CONTEXTS_DIR=str(folder),
                AWS_ENDPOINT_URL_S3=endpoint,
                AWS_ENDPOINT_URL_LAMBDA=fault.url,
                PROGRESS_INTERVAL="3600",
            )
            command = [PYTHON, "-m", "tasks", "aws-e2e", "--env", "dev"]
            try:
                one = timed([*command, "--client-id", ids[0]], env)
                together = timed([*command, "--client-ids", *ids, "--parallel", str(clients)], env)
                in_turn = timed([*command, "--client-ids", *ids, "--parallel", "1"], env)
            finally:
                fault.stop()
    return [
        Row(
            f"4a {clients} clients --parallel {clients}",
            f"{together:.2f} s",
            f"one client {one:.2f} s",
            together / one,
            "ratio <= 1.25",
            together / one <= 1.25,
        ),
        Row(
            f"4b {clients} clients one by one",
            f"{in_turn:.2f} s",
            f"parallel {together:.2f} s",
            in_turn / together,
            "ratio >= 6",
            in_turn / together >= 6,
        ),
    ]


def many_contexts(count: int, runs: int) -> list[Row]:
    """Target 5: `context list` and the local client_id allocation with many existing contexts, beyond start-up."""
    from tasks.contexts.store import ContextStore

    with contexts_folder() as folder:
        store = ContextStore(folder)
        now = datetime.now(UTC)
        for n in range(count):
            store.create("lai_weekly", f"context {n}", now)
        env = environ(CONTEXTS_DIR=str(folder))
        startup = median(runs, lambda: timed([PYTHON, "-m", "tasks", "context", "--help"], env))
        listing = median(runs, lambda: timed([PYTHON, "-m", "tasks", "context", "list"], env))
        creating = median(runs, lambda: timed([PYTHON, "-m", "tasks", "context", "new"], env))
    return [
        Row(
            f"5a context list, {count} contexts",
            f"{listing - startup:.3f} s",
            f"start-up {startup:.2f} s",
            listing / startup,
            "<= 0.2 s beyond start-up",
            listing - startup <= 0.2,
        ),
        Row(
            f"5b context new, {count} contexts",
            f"{creating - startup:.3f} s",
            f"start-up {startup:.2f} s",
            creating / startup,
            "<= 0.2 s beyond start-up",
            creating - startup <= 0.2,
        ),
    ]


def render(rows: list[Row], judge: bool) -> str:
    lines = [f"{'target':<34} {'measured':>10} {'baseline':>22} {'ratio':>7}  {'goal':<28} verdict"]
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        verdict = ("PASS" if row.passed else "FAIL") if judge else "(smoke)"
        lines.append(f"{row.target:<34} {row.measured:>10} {row.baseline:>22} {ratio:>7}  {row.goal:<28} {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="one small iteration of each target, no verdicts")
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (medians); default 5")
    parser.add_argument("--only", default="1,2,3,4,5", help="targets to measure, e.g. 1,4 (default all)")
    args = parser.parse_args(argv)
    runs = 1 if args.smoke else args.runs
    targets: dict[str, Callable[[], list[Row]]] = {
        "1": lambda: warm_local_e2e(runs),
        "2": lambda: session_overhead(runs),
        "3": lambda: [] if args.smoke else first_run(),  # a fresh clone downloads packages: not in the smoke run
        "4": lambda: parallel_clients(2, 0.05) if args.smoke else parallel_clients(8, 1.0),
        "5": lambda: many_contexts(20 if args.smoke else 1000, runs),
    }
    rows = [row for key in args.only.split(",") for row in targets[key.strip()]()]
    print(render(rows, judge=not args.smoke))
    return 0 if args.smoke or all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
