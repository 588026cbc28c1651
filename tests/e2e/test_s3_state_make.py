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
from tasks.contexts.store import ContextStore
from tests.conftest import MAKE, edit_cached_row, local_aws_server, make, make_environ
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


def teammates_config(clone: Path, client_id: str) -> bytes:
    """Another config for the same client_id, as a teammate's clone would have promoted it."""
    return (clone / "contexts" / client_id / "client_config.yaml").read_bytes() + b"# the teammate's tuning\n"


def test_aws_e2e_refuses_a_config_in_s3_this_context_did_not_promote_pull_or_test(
    clone: Path, aws_flows: dict[str, str]
) -> None:
    client_id = passed_context(clone)
    key = f"clients/{client_id}.yaml"
    put = s3(aws_flows).put_object(Bucket=CONFIGS, Key=key, Body=teammates_config(clone, client_id))
    runs_before = context_json(clone, client_id)["runs"]

    refused = one_error_line(make(clone, "aws-e2e", "ENV=dev", f"CLIENT_ID={client_id}", **aws_flows), 2)
    assert f"s3://{CONFIGS}/{key} holds a config this context did not promote, pull or test" in refused
    assert f"S3 version {put['VersionId']}, last modified 20" in refused and "sha256 " in refused
    assert f"`make pull CLIENT_ID={client_id} ENV=dev`" in refused and "FORCE=1" in refused
    assert context_json(clone, client_id)["runs"] == runs_before  # nothing invoked, nothing recorded

    planned = make(clone, "promote", "ENV=dev", f"CLIENT_ID={client_id}", "DRY_RUN=1", **aws_flows)
    assert "this context did not write" in one_error_line(planned, 2)  # the dry run refuses as the real one does

    forced = make(clone, "aws-e2e", "ENV=dev", f"CLIENT_ID={client_id}", "FORCE=1", **aws_flows)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    [run] = [r for r in context_json(clone, client_id)["runs"] if r["env"] == "dev"]
    record = json.loads((clone / "contexts" / client_id / "runs" / run["run_id"] / "run.json").read_text())
    assert any(note.startswith("config not this context's (forced): ") for note in record["notes"])


BILLION_LAUGHS = "\n".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
        "client_profile: {client_id: *i}",
        "watch_domains: []",
        "newsletter_layout: {sections: []}",
    ]
)


def test_s3_configs_are_untrusted_input(clone: Path, aws_flows: dict[str, str]) -> None:
    bucket = s3(aws_flows)
    assert len(BILLION_LAUGHS) < 500
    bucket.put_object(Bucket=CONFIGS, Key="clients/lai_weekly_v900.yaml", Body=BILLION_LAUGHS.encode())
    for target in ("pull", "aws-e2e"):
        line = one_error_line(make(clone, target, "ENV=dev", "CLIENT_ID=lai_weekly_v900", **aws_flows), 2)
        assert line.endswith(
            "lai_weekly_v900.yaml:1: YAML aliases are refused (one refers to the node anchored at line 1); write it out"
        ), line

    source = passed_context(clone)
    config = (clone / "contexts" / source / "client_config.yaml").read_text().replace(source, "lai_weekly_v901")
    padded = (config + "#" * 2_000_000 + "\n").encode()
    bucket.put_object(Bucket=CONFIGS, Key="clients/lai_weekly_v901.yaml", Body=padded)
    line = one_error_line(make(clone, "pull", "ENV=dev", "CLIENT_ID=lai_weekly_v901", **aws_flows), 2)
    assert f"lai_weekly_v901.yaml is {len(padded)} bytes, over MAX_CONFIG_BYTES=1048576: not read" in line
    allowed = make(clone, "pull", "ENV=dev", "CLIENT_ID=lai_weekly_v901", MAX_CONFIG_BYTES="3000000", **aws_flows)
    assert allowed.returncode == 0, allowed.stderr
    for value in ("abc", "0", "-5", "1e6"):
        line = one_error_line(make(clone, "contexts", MAX_CONFIG_BYTES=value), 2)
        assert line == f"error: MAX_CONFIG_BYTES='{value}': expected a positive whole number of bytes, e.g. 1048576"

    mismatch = config.replace("lai_weekly_v901", "x" * 100_000)
    bucket.put_object(Bucket=CONFIGS, Key="clients/lai_weekly_v902.yaml", Body=mismatch.encode())
    line = one_error_line(make(clone, "pull", "ENV=dev", "CLIENT_ID=lai_weekly_v902", **aws_flows), 2)
    assert "client_profile.client_id is 'xxxx" in line and "...', expected 'lai_weekly_v902'" in line
    assert len(line) < 300


def test_keys_that_are_not_client_ids_are_ignored_by_allocation_with_one_warning(clone: Path) -> None:
    with local_aws_server(clone) as flows:  # its own S3: nothing else's versions
        bucket = s3(flows)
        for key in ("lai_weekly_v5000", "lai_weekly_v" + "9" * 60, "lai_weekly_v" + "1" * 300):
            bucket.put_object(Bucket=CONFIGS, Key=f"clients/{key}.yaml", Body=b"x")
        local = max([0, *ContextStore(clone / "contexts").versions("lai_weekly")])
        created = make(clone, "new-context", **flows)  # an endpoint is configured: its S3 history counts
        assert created.returncode == 0, created.stderr
        assert created.stdout.split()[-1] == f"lai_weekly_v{max(5000, local) + 1}"
        [warning] = [line for line in created.stderr.splitlines() if line.startswith("warning:")]
        assert warning.startswith(f"warning: ignored 2 key(s) under s3://{CONFIGS}/ that are not valid client_ids")
        assert len(warning) < 250
        assert make(clone, "report").returncode == 0
        assert make(clone, "contexts").returncode == 0


def test_published_runs_of_the_wrong_shape_are_skipped_with_one_warning(clone: Path, aws_flows: dict[str, str]) -> None:
    data = "vectora-inbox-data-dev"
    for name, body in (("list", b"[]"), ("types", b'{"run_id": 1, "client_id": "x"}'), ("json", b"{nope")):
        s3(aws_flows).put_object(Bucket=data, Key=f"e2e-runs/lai_weekly_v1/{name}/run.json", Body=body)
    wrong_figures = {
        "run_id": "r",
        "client_id": "lai_weekly_v1",
        "env": "dev",
        "status": "passed",
        "started_at": "t",
        "steps": [{"step": "ingest", "billed_duration_ms": "many"}],
    }
    s3(aws_flows).put_object(Bucket=data, Key="e2e-runs/lai_weekly_v1/figures/run.json", Body=json.dumps(wrong_figures))
    result = make(clone, "report", "ENV=dev", **aws_flows)
    assert result.returncode == 0, result.stderr
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warning.startswith("warning: skipped 4 published run(s) that could not be used, e.g. s3://"), warning


def test_a_tampered_listing_cache_never_shows_a_failed_context_as_passed_or_promoted(clone: Path) -> None:
    failed = make(clone, "local-e2e", 'PAYLOAD={"simulate": "nothing_ingested"}')
    assert failed.returncode == 2 and "exit 1:" in failed.stderr
    client_id = failed.stdout.split()[1].rstrip(":")
    assert make(clone, "contexts").returncode == 0

    def lie(row: dict) -> dict:
        row |= {"status": "passed", "promoted": ["prod"], "statuses": {"local": "passed", "prod": "passed"}}
        row["last_run"] |= {"status": "passed"}
        return row

    edit_cached_row(clone / "contexts", client_id, lie)
    [line] = [line for line in make(clone, "contexts").stdout.splitlines() if line.startswith(client_id + " ")]
    assert line.split()[1:3] == ["failed", "-"] and " failed " in line and "prod" not in line
    [line] = [line for line in make(clone, "report").stdout.splitlines() if client_id in line]
    assert "passed" not in line and "prod" not in line and "failed" in line


def test_make_report_json_from_the_cache_equals_a_fresh_read(clone: Path) -> None:
    passed_context(clone)
    (clone / "contexts" / ".listing.cache").unlink(missing_ok=True)
    fresh = make(clone, "report", "JSON=1")
    cached = make(clone, "report", "JSON=1")
    assert fresh.returncode == cached.returncode == 0 and (clone / "contexts" / ".listing.cache").is_file()
    assert json.loads(cached.stdout) == json.loads(fresh.stdout)
    last = next(row["last_run"] for row in json.loads(cached.stdout) if row["status"] == "passed")
    assert last["finished_at"] and last["config_sha256"] and last["exit_code"] == 0 and last["checks_total"] > 0
