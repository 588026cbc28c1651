"""What comes from S3 is untrusted and what is recorded tells the truth, through make against `make local-aws`:
configs and published runs bounded and checked, promote recoverable at every instant, aws-e2e about one config,
and the listing cache never more than a cache."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.aws import clients as aws
from tests.conftest import MAKE, local_aws_server, make, make_environ
from tests.s3_outage import S3Tap

CONFIGS = "vectora-inbox-config-dev"


@pytest.fixture(scope="module")
def aws_flows(clone: Path) -> Iterator[dict[str, str]]:
    """`make local-aws` running for the module, its variables for make."""
    with local_aws_server(clone) as flows:
        yield flows


def s3(flows: dict[str, str]):
    return aws.ClientFactory.local("eu-west-3", flows["AWS_ENDPOINT_URL"]).s3()


def context_json(clone: Path, client_id: str) -> dict:
    return json.loads((clone / "contexts" / client_id / "context.json").read_text())


def passed_context(clone: Path) -> str:
    """A new context with a passed local run (what promote needs); its client_id."""
    ran = make(clone, "local-e2e")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout.split()[1].rstrip(":")


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The single `error:` line of a refused command (exit code as documented; no traceback)."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"exit {code}:" in result.stderr and "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


def descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, pending = [], [pid]
    while pending:
        found.append(current := pending.pop())
        pending.extend(children.get(current, []))
    return found


class FullDiskAfterPut:
    """S3 through a tap that, when armed, lets the next config write through but first takes from every process of
    the make run in flight the right to write a byte to any file (RLIMIT_FSIZE 0: the kernel's "File too large", as
    a full disk): whatever that run records after its put fails."""

    def __init__(self, flows: dict[str, str]) -> None:
        self.armed: list[int] = []
        self.tap = S3Tap(flows["AWS_ENDPOINT_URL"], self._before_put)
        self.flows = flows | {"AWS_ENDPOINT_URL": self.tap.url}

    def _before_put(self, path: str) -> None:
        if self.armed and "/clients/" in path:
            for pid in descendants(self.armed.pop()):
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, 0))

    def make(self, clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return make(clone, *args, **self.flows)

    def make_failing_after_put(self, clone: Path, *args: str) -> str:
        child = subprocess.Popen(
            [*MAKE, *args],
            cwd=clone,
            env=make_environ(**self.flows),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.armed.append(child.pid)
        out, err = child.communicate(timeout=120)
        assert not self.armed, "the config write never came"
        assert child.returncode == 2 and "exit 3:" in err and "File too large" in err, out + err
        return err


def edit_and_pass(clone: Path, client_id: str, text: str) -> bytes:
    config = clone / "contexts" / client_id / "client_config.yaml"
    config.write_bytes(config.read_bytes() + text.encode())
    assert make(clone, "local-e2e", f"CLIENT_ID={client_id}").returncode == 0
    return config.read_bytes()


def test_a_promote_whose_recording_fails_after_its_put_is_finished_by_the_rerun_and_rolled_back(
    clone: Path, aws_flows: dict[str, str]
) -> None:
    disk = FullDiskAfterPut(aws_flows)
    try:
        client_id = passed_context(clone)
        key = f"clients/{client_id}.yaml"
        original = (clone / "contexts" / client_id / "client_config.yaml").read_bytes()
        assert disk.make(clone, "promote", "ENV=dev", f"CLIENT_ID={client_id}").returncode == 0
        tuned = edit_and_pass(clone, client_id, "# tuned\n")

        disk.make_failing_after_put(clone, "promote", "ENV=dev", f"CLIENT_ID={client_id}")
        assert s3(aws_flows).get_object(Bucket=CONFIGS, Key=key)["Body"].read() == tuned  # the put went through
        [target] = context_json(clone, client_id)["targets"].values()
        assert target["pending"]["sha256"] and target["pending"]["replaced"]["version_id"]  # the intent, kept first

        rerun = disk.make(clone, "promote", "ENV=dev", f"CLIENT_ID={client_id}")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "finished the unfinished promotion of " in rerun.stdout and "nothing to do" in rerun.stdout
        [target] = context_json(clone, client_id)["targets"].values()
        assert target["pending"] is None and target["promotion"]["sha256"] == target["uploads"][-1]["sha256"]
        rolled = disk.make(clone, "rollback", "ENV=dev", f"CLIENT_ID={client_id}")
        assert rolled.returncode == 0 and "restored the previous config" in rolled.stdout, rolled.stderr
        assert s3(aws_flows).get_object(Bucket=CONFIGS, Key=key)["Body"].read() == original

        # Rollback alone, right after such a failure, also restores what the put replaced.
        edit_and_pass(clone, client_id, "# tuned again\n")
        disk.make_failing_after_put(clone, "promote", "ENV=dev", f"CLIENT_ID={client_id}")
        rolled = disk.make(clone, "rollback", "ENV=dev", f"CLIENT_ID={client_id}")
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert "finished the unfinished promotion of " in rolled.stdout
        assert s3(aws_flows).get_object(Bucket=CONFIGS, Key=key)["Body"].read() == original
    finally:
        disk.tap.stop()
