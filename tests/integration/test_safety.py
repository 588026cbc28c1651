"""Bad input, prod, secrets, concurrency and an S3 outage: refused cleanly, nothing lost, nothing leaked."""

from __future__ import annotations

import errno
import html
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.aws import clients as aws
from tasks.aws import outputs
from tasks.cli import main
from tasks.contexts.store import ContextStore
from tasks.errors import EnvironmentProblem
from tasks.flows import aws_e2e
from tasks.flows.config_flows import ConfigFlows
from tasks.local.server import EmbeddedAws, seed
from tasks.masking import mask, secret_forms
from tasks.pipeline.records import RunRecord, StepResult
from tasks.settings import load_settings
from tests.conftest import run_tasks, safe_environ, settings_for, start_and_wait_for_handler
from tests.s3_outage import S3Outage

BAD_CLIENT_IDS = ["../etc", "lai weekly", "LAI_WEEKLY_V1", "lai_weekly_v0", "a" * 196 + "_v1", ""]
CLIENT_COMMANDS = [
    ["local-e2e"],
    ["upload-config", "--env", "dev"],
    ["promote", "--env", "dev"],
    ["rollback", "--env", "dev"],
    ["aws-e2e", "--env", "dev"],
    ["report"],
]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under folder with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


def refused(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = run_tasks(env, *args)
    assert result.returncode in (2, 3), (args, result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"exit {result.returncode}: ") and lines[-2].startswith("error: ")
    return result


@pytest.fixture
def existing(contexts_dir: Path) -> str:
    """A context that exists, so that refusals are about the input, not about a missing context."""
    return ContextStore(contexts_dir).create("lai_weekly", "exists", datetime.now(UTC)).client_id


@pytest.mark.parametrize("command", CLIENT_COMMANDS, ids=lambda c: c[0])
def test_malformed_client_ids_are_refused_by_every_command(
    contexts_dir: Path, existing: str, command: list[str]
) -> None:
    env = safe_environ(CONTEXTS_DIR=str(contexts_dir), AWS_ENDPOINT_URL="http://127.0.0.1:9")
    before = snapshot(contexts_dir)
    for client_id in BAD_CLIENT_IDS:
        result = refused(env, *command, "--client-id", client_id)
        assert result.returncode == 2 and "client_id" in result.stderr
    assert snapshot(contexts_dir) == before


@pytest.mark.parametrize("env_name", ["production", "Dev", "", "local;rm"])
def test_unknown_envs_are_refused_by_every_env_command(contexts_dir: Path, existing: str, env_name: str) -> None:
    env = safe_environ(CONTEXTS_DIR=str(contexts_dir))
    for command in (["upload-config"], ["promote"], ["rollback"], ["aws-e2e"], ["report"]):
        result = refused(env, *command, "--client-id", existing, "--env", env_name)
        assert "unknown env" in result.stderr and "use one of local, dev, stage, prod" in result.stderr


def test_a_config_that_is_not_yaml_or_lacks_a_key_is_named_and_nothing_runs(contexts_dir: Path, existing: str) -> None:
    config = contexts_dir / existing / "client_config.yaml"
    env = safe_environ(CONTEXTS_DIR=str(contexts_dir))
    config.write_text("client_profile: [unclosed\n")
    result = refused(env, "local-e2e", "--client-id", existing)
    assert f"{config}:" in result.stderr and "not valid YAML" in result.stderr
    config.write_text("client_profile:\n  client_id: " + existing + "\nwatch_domains: []\n")
    result = refused(env, "local-e2e", "--client-id", existing)
    assert "missing required key 'newsletter_layout.sections'" in result.stderr
    assert not (contexts_dir / existing / "runs").exists()
    result = refused(env | {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "promote", "--client-id", existing, "--force")
    assert "missing required key" in result.stderr


def test_a_run_folder_deleted_by_hand_is_handled(contexts_dir: Path, existing: str) -> None:
    env = safe_environ(CONTEXTS_DIR=str(contexts_dir))
    assert run_tasks(env, "local-e2e", "--client-id", existing).returncode == 0
    store = ContextStore(contexts_dir)
    for run in store.load(existing).runs:
        shutil.rmtree(contexts_dir / existing / "runs" / run.run_id)
    result = refused(env, "report", "--client-id", existing)
    assert f"{existing} has no run with a run.json (deleted by hand?)" in result.stderr
    summary = run_tasks(env, "report")
    assert summary.returncode == 0 and f"`{existing}`" in summary.stdout
    resumed = refused(
        env | {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
        "aws-e2e",
        "--client-id",
        existing,
        "--from",
        "newsletter",
        "--dry-run",
    )
    assert "needs an earlier run" in resumed.stderr


@pytest.mark.parametrize(
    "command",
    [["upload-config"], ["promote", "--force"], ["rollback"], ["aws-e2e"]],
    ids=lambda c: c[0],
)
def test_prod_is_never_touched_without_confirmation(contexts_dir: Path, existing: str, command: list[str]) -> None:
    # Any AWS call would fail on this closed port with exit 3: exit 2 proves nothing was sent.
    env = safe_environ(CONTEXTS_DIR=str(contexts_dir), AWS_ENDPOINT_URL="http://127.0.0.1:9")
    result = refused(env, *command, "--client-id", existing, "--env", "prod")
    assert result.returncode == 2 and "on prod needs confirmation: add --yes (or set CONFIRM_PROD=1)" in result.stderr
    confirmed = run_tasks(env | {"CONFIRM_PROD": "1"}, *command, "--client-id", existing, "--env", "prod")
    assert confirmed.returncode != 2 or "confirmation" not in confirmed.stderr


@pytest.fixture
def local_aws(contexts_dir: Path) -> Iterator[str]:
    settings = settings_for(contexts_dir)
    with EmbeddedAws(settings, envs=("local", "dev")).running() as endpoint:
        s3 = aws.ClientFactory.local(settings.region, endpoint).s3()
        for env in ("local", "dev"):
            seed(s3, settings, env)
        yield endpoint


def test_secrets_never_reach_files_or_output(contexts_dir: Path, local_aws: str, tmp_path: Path) -> None:
    canaries = {
        "AWS_SECRET_ACCESS_KEY": "canary-secret-key-0001",
        "AWS_SESSION_TOKEN": "canary-session-token-0002",
        "VENDOR_API_TOKEN": "canary-api-token-0003",
        "DB_PASSWORD": "canary-password-0004",
    }
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    (leaky / "leak.txt").write_text(canaries["VENDOR_API_TOKEN"])
    (leaky / "handler.py").write_text(
        "import pathlib\n"
        "def lambda_handler(event, context):\n"
        "    secret = pathlib.Path(__file__).with_name('leak.txt').read_text()\n"
        "    print('connecting with', secret)\n"
        "    raise RuntimeError('login failed for token ' + secret)\n"
    )
    env = safe_environ(
        CONTEXTS_DIR=str(contexts_dir),
        AWS_ENDPOINT_URL=local_aws,
        **canaries,
        AWS_ACCESS_KEY_ID="canary-access-key-0005",
    )
    outputs = [
        run_tasks(env, "local-e2e", "--purpose", "secrets"),
        run_tasks(env, "promote", "--client-id", "lai_weekly_v1", "--env", "dev"),
        run_tasks(env, "aws-e2e", "--client-id", "lai_weekly_v1", "--env", "dev"),
        run_tasks(
            env | {"LOCAL_HANDLER_NEWSLETTER": f"{leaky}:handler.lambda_handler"},
            "local-e2e",
            "--client-id",
            "lai_weekly_v1",
        ),
    ]
    assert [o.returncode for o in outputs] == [0, 0, 0, 1], [o.stderr for o in outputs]
    assert "login failed for token ***" in outputs[-1].stderr
    written = "".join(p.read_text(errors="replace") for p in contexts_dir.rglob("*") if p.is_file())
    printed = "".join(o.stdout + o.stderr for o in outputs)
    assert "login failed for token ***" in written
    for value in [*canaries.values(), "canary-access-key-0005"]:
        assert value not in written and value not in printed


def test_an_s3_outage_during_upload_keeps_the_previous_config_and_does_not_promote(
    contexts_dir: Path, local_aws: str
) -> None:
    settings = settings_for(contexts_dir, VECTORA_ENV="dev")
    s3 = aws.ClientFactory.local(settings.region, local_aws).s3()
    store = ContextStore(contexts_dir)
    context = store.create("lai_weekly", "outage", datetime.now(UTC))
    ConfigFlows(settings, store, s3, lambda: datetime.now(UTC)).promote(context, force=True)
    before = s3.get_object(Bucket="vectora-inbox-config-dev", Key=f"clients/{context.client_id}.yaml")["Body"].read()
    context.config_path.write_bytes(context.config_path.read_bytes() + b"# changed\n")
    outage = S3Outage(local_aws)
    try:
        broken = aws.ClientFactory.local(settings.region, outage.url).s3()
        flows = ConfigFlows(settings, store, broken, lambda: datetime.now(UTC))
        with pytest.raises(EnvironmentProblem, match=r"s3:PutObject .* failed: ServiceUnavailable"):
            flows.promote(store.load(context.client_id), force=True)
    finally:
        outage.stop()
    assert outage.refused_puts >= 1
    after = s3.get_object(Bucket="vectora-inbox-config-dev", Key=f"clients/{context.client_id}.yaml")["Body"].read()
    assert after == before
    [target] = store.load(context.client_id).targets.values()
    assert len(target.uploads) == 1 and target.promotion is not None


def test_a_second_run_of_the_same_context_refuses_while_the_first_runs(contexts_dir: Path, slow_handler: Path) -> None:
    env = safe_environ(CONTEXTS_DIR=str(contexts_dir), LOCAL_HANDLER_INGEST=f"{slow_handler}:handler.lambda_handler")
    first, _ = start_and_wait_for_handler(env, slow_handler, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        second = run_tasks(env, "local-e2e", "--client-id", "lai_weekly_v1")
        assert second.returncode == 3 and "is busy: a run is in progress (pid" in second.stderr
        assert len(json.loads((contexts_dir / "lai_weekly_v1" / "context.json").read_text())["runs"]) == 1
    finally:
        first.send_signal(2)
        first.wait(timeout=30)
    assert first.returncode == 130


# Hostile input and faults (issue 11) met below `make`: the machine's own errors, masking, and test isolation.


@pytest.fixture
def in_process(contexts_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run `python -m tasks` in this process on contexts_dir (its output streams restored afterwards)."""
    monkeypatch.setenv("CONTEXTS_DIR", str(contexts_dir))
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    return contexts_dir


def test_a_contexts_folder_that_is_not_writable_is_exit_3(
    in_process: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(path: str, *args: object) -> None:  # what a read-only folder does (root would not see it with chmod)
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(os, "mkdir", refuse)
    assert main(["context", "new"]) == 3
    *_, error, exit_line = capsys.readouterr().err.strip().splitlines()
    assert error.startswith(f"error: Permission denied: {in_process}/lai_weekly_v1; check the folder's permissions")
    assert exit_line == "exit 3: environment, credentials or busy"


def test_a_full_disk_during_a_run_is_exit_3_and_the_run_is_recorded_failed(
    in_process: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full(reader: object, checks: object, folder: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(folder))

    monkeypatch.setattr(outputs.OutputReader, "save", full)
    assert main(["local-e2e"]) == 3
    assert "No space left on device" in capsys.readouterr().err
    run = ContextStore(in_process).load("lai_weekly_v1").runs[-1]
    written = json.loads((in_process / "lai_weekly_v1" / "runs" / run.run_id / "run.json").read_text())
    assert (run.status, written["status"], written["exit_code"]) == ("failed", "failed", 3)


def test_a_full_disk_for_the_step_summary_is_exit_3_not_a_traceback(contexts_dir: Path) -> None:
    result = refused(safe_environ(CONTEXTS_DIR=str(contexts_dir), GITHUB_STEP_SUMMARY="/dev/full"), "local-e2e")
    assert result.returncode == 3 and "No space left on device: /dev/full" in result.stderr


def test_secrets_are_masked_in_every_form_before_serialization() -> None:
    secret = 'q"b\\é<&>-canary'
    forms = secret_forms([secret])
    document = mask({"error": f"token {secret}", "tail": json.dumps(secret), secret: [html.escape(secret), 1]}, forms)
    for text in (json.dumps(document), json.dumps(document, ensure_ascii=False), html.escape(json.dumps(document))):
        assert "canary" not in text
    assert document["error"] == "token ***" and document["***"][1] == 1


def test_tests_read_no_developer_dotenv_or_home(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("this line is broken\n")
    assert load_settings(tmp_path, environ=safe_environ()).env == "dev"  # the .env beside the code is not read
    assert safe_environ()["VECTORA_DOTENV"] == os.devnull
    assert Path(os.environ["HOME"]).is_relative_to(tmp_path.parents[1])
    assert not any(name.startswith("XDG_") for name in os.environ)


def test_saved_cloudwatch_logs_are_masked(contexts_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = 'q"b\\é<&>-canary'
    settings = replace(settings_for(contexts_dir), secrets=(secret,))
    monkeypatch.setattr(aws, "fetch_log", lambda *args: f"raw {secret} json {json.dumps(secret)}\n")
    factory = aws.ClientFactory.local(settings.region, "http://127.0.0.1:9")  # never called: fetch_log is replaced
    flow = aws_e2e.AwsE2E(settings, ContextStore(contexts_dir), factory, lambda: datetime.now(UTC))
    now = datetime.now(UTC).isoformat()
    step = StepResult("ingest", "vectora-inbox-ingest-v2-dev", "failed", now, request_id="r-1")
    record = RunRecord("r", "lai_weekly_v1", "dev", "AWS", None, "failed", now, now, None, {}, steps=(step,))
    flow._save_failed_logs(record, tmp_path / "logs")
    assert (tmp_path / "logs" / "ingest.log").read_text() == 'raw *** json "***"\n'
