"""Measure the toolkit's overhead against floors measured side by side, and print ratios with PASS/FAIL.

`make bench` (or `python -m benchmarks.bench`) runs every target several times and takes medians, because absolute
times drift on a shared machine. `--smoke` runs each once on small inputs and judges nothing (the test suite does it).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
REGION = "eu-west-3"  # the toolkit's default region (settings)
SAFE = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass(frozen=True)
class Row:
    """One target: what was measured, against what, the ratio per pair (median and range), and the verdict."""

    target: str
    measured: str
    baseline: str
    ratios: tuple[float, ...]
    goal: str
    passed: bool | None  # None: information, not judged

    @property
    def ratio(self) -> str:
        if not self.ratios:
            return "-"
        low, high = min(self.ratios), max(self.ratios)
        return f"{statistics.median(self.ratios):.2f} ({low:.2f}-{high:.2f})"


@dataclass(frozen=True)
class Usage:
    """One command's wall seconds, CPU seconds (its whole process tree) and peak RSS (its largest process), MB."""

    wall: float
    cpu: float
    peak_mb: float


def environ(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAKE")) and k != "VECTORA_ENV"}
    return keep | SAFE | extra


def measure(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> Usage:
    """Run one command, which must succeed; what it cost."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"benchmark command failed ({process.returncode}): {' '.join(command)}\n{errors.decode()}")
    return Usage(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def system_busy_seconds() -> float:
    """CPU seconds this machine spent busy since boot, all processes and cores (Linux /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")  # guest time is inside user already


def timed(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> float:
    """Wall seconds of one command, which must succeed."""
    return measure(command, env, cwd).wall


def alternated(runs: int, *commands: Callable[[], Usage]) -> list[list[Usage]]:
    """Each command once per run, in turn (A B A B...), so that drift hits all alike; one list per command."""
    results: list[list[Usage]] = [[] for _ in commands]
    for _ in range(runs):
        for found, command in zip(results, commands, strict=True):
            found.append(command())
    return results


def per_pair(a: list[float], b: list[float], how: Callable[[float, float], float]) -> tuple[float, ...]:
    return tuple(how(x, y) for x, y in zip(a, b, strict=True))


def med(values: list[Usage], what: str = "wall") -> float:
    return statistics.median(getattr(v, what) for v in values)


def ratio_row(target: str, a: list[float], b: list[float], baseline: str, goal: float, at_most: bool = True) -> Row:
    """A row judged on the median of the per-pair ratios a/b: at most (or at least) goal."""
    ratios = per_pair(a, b, lambda x, y: x / y)
    ratio = statistics.median(ratios)
    sign = "<=" if at_most else ">="
    passed = ratio <= goal if at_most else ratio >= goal
    return Row(
        target,
        f"{statistics.median(a):.2f} s",
        f"{baseline} {statistics.median(b):.2f} s",
        ratios,
        f"ratio {sign} {goal}",
        passed,
    )


def beyond_row(target: str, a: list[float], b: list[float], baseline: str, goal: float) -> Row:
    """A row judged on the median of the per-pair differences a - b: at most goal seconds."""
    extra = statistics.median(per_pair(a, b, lambda x, y: x - y))
    return Row(
        target,
        f"{extra:+.3f} s",
        f"{baseline} {statistics.median(b):.2f} s",
        per_pair(a, b, lambda x, y: x / y),
        f"<= {goal} s beyond",
        extra <= goal,
    )


@contextmanager
def contexts_folder() -> Iterator[Path]:
    """A scratch contexts folder with the committed templates, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="vectora-bench-") as tmp:
        folder = Path(tmp) / "contexts"
        shutil.copytree(ROOT / "contexts" / "templates", folder / "templates")
        yield folder


def newest_run(folder: Path, client_id: str) -> dict[str, Any]:
    runs_dir = folder / client_id / "runs"
    return json.loads((max(runs_dir.iterdir(), key=lambda p: p.name) / "run.json").read_text())


def warm_local_e2e(runs: int) -> list[Row]:
    """Targets 1 and 6: a warm `make local-e2e` against the in-process floor (benchmarks/inprocess_floor.py); the
    peak RSS of its processes, and each step's Max Memory Used against it (the function's own, not the toolkit's)."""
    with contexts_folder() as folder:
        env = environ(CONTEXTS_DIR=str(folder))
        subprocess.run(["make", "-s", "local-e2e"], cwd=ROOT, env=env, capture_output=True, check=True)
        toolkit, floor = alternated(
            runs,
            lambda: measure(["make", "-s", "local-e2e", "CLIENT_ID=lai_weekly_v1"], env),
            lambda: measure([PYTHON, "-m", "benchmarks.inprocess_floor", "--client-id", "lai_weekly_v1"], env),
        )
        steps = newest_run(folder, "lai_weekly_v1")["steps"]
    peak = max(u.peak_mb for u in toolkit)
    used = [s["max_memory_used_mb"] for s in steps]
    return [
        ratio_row("1 warm local-e2e vs in-process", [u.wall for u in toolkit], [u.wall for u in floor], "floor", 1.6),
        Row("6a local-e2e peak RSS", f"{peak:.0f} MB", "-", (), "<= 120 MB", peak <= 120),
        Row(
            "6b steps' Max Memory Used",
            "/".join(f"{m} MB" for m in used),
            f"toolkit {peak:.0f} MB",
            (),
            "each its own (< toolkit)",
            all(m is not None and m < peak for m in used),
        ),
    ]


def make_layer(runs: int) -> list[Row]:
    """Target 5: what make + nox add to a command: `make contexts` against `python -m tasks context list`."""
    with contexts_folder() as folder:
        env = environ(CONTEXTS_DIR=str(folder))
        made, direct = alternated(
            runs,
            lambda: measure(["make", "-s", "contexts"], env),
            lambda: measure([PYTHON, "-m", "tasks", "context", "list"], env),
        )
    wall = beyond_row("5 make + nox layer", [u.wall for u in made], [u.wall for u in direct], "direct", 0.15)
    extra_cpu = statistics.median(per_pair([u.cpu for u in made], [u.cpu for u in direct], lambda x, y: x - y))
    return [replace(wall, measured=f"{wall.measured} ({extra_cpu:+.2f} s CPU)")]


def first_run() -> list[Row]:
    """Target 7: the first `make local-e2e` in a fresh clone, with an empty package cache (network installs)."""
    with tempfile.TemporaryDirectory(prefix="vectora-clone-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = environ(UV_CACHE_DIR=str(Path(tmp) / "uv-cache"))
        wall = timed(["make", "-s", "local-e2e"], env, cwd=clone)
    return [Row("7 first local-e2e, fresh clone", f"{wall:.1f} s", "-", (), "< 60 s", wall < 60)]


@contextmanager
def local_aws() -> Iterator[str]:
    """The real local runtime as `make local-aws` serves it (the same task, every env); its endpoint."""
    server = subprocess.Popen(
        [PYTHON, "-m", "tasks", "local-aws", "--port", "0"], cwd=ROOT, env=environ(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("embedded AWS on "):
            raise SystemExit(f"make local-aws did not start: {line}")
        yield line.split()[3].rstrip(":")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()  # its environments end with it (lambda_launcher.py)
            raise SystemExit("make local-aws did not stop within 30 s of Ctrl-C") from None


def clients_on(endpoint: str, folder: Path, count: int) -> list[str]:
    """count new contexts, each one's config uploaded to dev's config bucket on endpoint; their client_ids."""
    from tasks.aws import clients as aws
    from tasks.contexts.store import ContextStore

    s3 = aws.ClientFactory.local(REGION, endpoint).s3()
    store = ContextStore(folder)
    ids = []
    for n in range(count):
        context = store.create("lai_weekly", f"bench client {n}", datetime.now(UTC))
        s3.put_object(
            Bucket="vectora-inbox-config-dev",
            Key=f"clients/{context.client_id}.yaml",
            Body=context.config_path.read_bytes(),
        )
        ids.append(context.client_id)
    return ids


def against_local_aws(runs: int, clients: int) -> list[Row]:
    """Targets 2 and 4 on `make local-aws`: many clients at once and one by one against one client (wall time),
    and one client's CPU time against a minimal boto3 script invoking the three functions (benchmarks/boto3_floor.py).
    """
    functions = [f"vectora-inbox-{step}-v2-dev" for step in ("ingest", "normalize-score", "newsletter")]
    with contexts_folder() as folder, local_aws() as endpoint:
        ids = clients_on(endpoint, folder, clients)
        env = environ(CONTEXTS_DIR=str(folder), AWS_ENDPOINT_URL=endpoint, PROGRESS_INTERVAL="3600")
        aws_e2e = ["make", "-s", "aws-e2e", "ENV=dev"]
        together = [*aws_e2e, f"CLIENT_IDS={' '.join(ids)}", f"PARALLEL={clients}"]
        measure(together, env)  # warm: one execution environment per client and function
        script = [PYTHON, "-m", "benchmarks.boto3_floor", f"--endpoint={endpoint}", f"--region={REGION}"]
        busy: list[float] = []  # the whole machine's CPU seconds during each parallel run (toolkit, server, handlers)

        def parallel_run() -> Usage:
            before = system_busy_seconds()
            usage = measure(together, env)
            busy.append(system_busy_seconds() - before)
            return usage

        one, floor, parallel, in_turn = alternated(
            runs,
            lambda: measure([*aws_e2e, f"CLIENT_ID={ids[0]}"], env),
            lambda: measure([*script, f"--client-id={ids[0]}", *functions], env),
            parallel_run,
            lambda: measure([*aws_e2e, f"CLIENT_IDS={' '.join(ids)}", "PARALLEL=1"], env),
        )
    walls = {name: [u.wall for u in found] for name, found in (("one", one), ("parallel", parallel), ("turn", in_turn))}
    cores = os.cpu_count() or 1
    # The most 2b could reach here: the parallel run cannot take less than its CPU spread over every core.
    ceiling = statistics.median(per_pair(walls["turn"], busy, lambda turn, cpu: turn / (cpu / cores)))
    return [
        ratio_row(f"2a {clients} clients PARALLEL={clients}", walls["parallel"], walls["one"], "one client", 2.0),
        ratio_row(f"2b {clients} clients one by one", walls["turn"], walls["parallel"], "parallel", 4.0, at_most=False),
        Row(
            f"2c ceiling of 2b on {cores} cores",
            f"{ceiling:.2f}",
            f"CPU {statistics.median(busy):.2f} s",
            (),
            "one by one / (CPU / cores)",
            None,
        ),
        replace(
            ratio_row("4 aws-e2e CPU vs boto3 script", [u.cpu for u in one], [u.cpu for u in floor], "script", 1.3),
            goal="CPU ratio <= 1.3",
        ),
    ]


def many_contexts(count: int, runs: int) -> list[Row]:
    """Target 3: `make contexts`, `make report` and `make context` with count contexts of one run each, against the
    same commands with an empty contexts folder (start-up). The contexts are copies of one real local run's files."""
    with contexts_folder() as folder, contexts_folder() as empty:
        full_env, empty_env = environ(CONTEXTS_DIR=str(folder)), environ(CONTEXTS_DIR=str(empty))

        def with_and_without(target: str) -> tuple[list[float], list[float]]:
            full, bare = alternated(
                runs,
                lambda: measure(["make", "-s", target], full_env),
                lambda: measure(["make", "-s", target], empty_env),
            )
            return [u.wall for u in full], [u.wall for u in bare]

        subprocess.run([PYTHON, "-m", "tasks", "local-e2e"], cwd=ROOT, env=full_env, capture_output=True, check=True)
        clone_contexts(folder / "lai_weekly_v1", count)
        return [
            beyond_row(f"{number} make {target}, {count} contexts", *with_and_without(target), "start-up", 0.5)
            for number, target in (("3a", "contexts"), ("3b", "report"), ("3c", "new-context"))
        ]


def clone_contexts(source: Path, count: int) -> None:
    """count - 1 more contexts like source (its record, config and newest run.json), written directly: fast."""
    client_id = source.name
    (run_dir,) = (source / "runs").iterdir()
    files = {
        name: (source / name).read_text()
        for name in ("context.json", "client_config.yaml", "expect.yaml")
        if (source / name).is_file()
    }
    run_json = (run_dir / "run.json").read_text()
    for n in range(2, count + 1):
        other = client_id.replace("_v1", f"_v{n}")
        target = source.with_name(other)
        (target / "runs" / run_dir.name).mkdir(parents=True)
        for name, text in files.items():
            (target / name).write_text(text.replace(client_id, other))
        (target / "runs" / run_dir.name / "run.json").write_text(run_json.replace(client_id, other))


def render(rows: list[Row], judge: bool) -> str:
    lines = [f"{'target':<34} {'measured':>22} {'baseline':>22} {'ratio (range)':>18}  {'goal':<26} verdict"]
    for row in rows:
        verdict = "(smoke)" if not judge else "-" if row.passed is None else "PASS" if row.passed else "FAIL"
        lines.append(
            f"{row.target:<34} {row.measured:>22} {row.baseline:>22} {row.ratio:>18}  {row.goal:<26} {verdict}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="one small iteration of each target, no verdicts")
    parser.add_argument("--runs", type=int, default=5, help="pairs per measurement (medians); default 5")
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="targets to measure, e.g. 1,4 (default all)")
    args = parser.parse_args(argv)
    runs = 1 if args.smoke else args.runs
    local = functools.cache(lambda: warm_local_e2e(runs))  # targets 1 and 6 come from the same runs
    remote = functools.cache(lambda: against_local_aws(runs, 2 if args.smoke else 8))  # and targets 2 and 4
    targets: dict[str, Callable[[], list[Row]]] = {
        "1": local,
        "2": remote,
        "3": lambda: many_contexts(20 if args.smoke else 10_000, runs),
        "4": remote,
        "5": lambda: make_layer(runs),
        "6": local,
        "7": lambda: [] if args.smoke else first_run(),  # a fresh clone downloads packages: not in the smoke run
    }
    groups = dict.fromkeys(targets[key.strip()] for key in args.only.split(","))
    rows = sorted((row for group in groups for row in group()), key=lambda row: row.target)
    print(render(rows, judge=not args.smoke))
    return 0 if args.smoke or all(row.passed is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
