"""The benchmark's smoke run: every target measured once on small inputs (no verdicts: timings are not tests)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO, safe_environ


def _smoke(module: str) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE --smoke`, which must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=safe_environ(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_the_benchmark_runs_every_target_once() -> None:
    result = _smoke("benchmarks.bench")
    rows = {line.split()[0] for line in result.stdout.splitlines()[1:]}
    assert rows == {"1", "2a", "2b", "2c", "3a", "3b", "3c", "4", "5", "6a", "6b"}
    assert all(line.endswith("(smoke)") for line in result.stdout.splitlines()[1:])


def test_the_step_functions_benchmark_runs_once() -> None:
    header, row = _smoke("benchmarks.sfn_bench").stdout.splitlines()
    assert header.split()[:4] == ["clients", "local", "Step", "Functions"]
    assert row.split()[0] == "1" and row.endswith("(smoke)")
