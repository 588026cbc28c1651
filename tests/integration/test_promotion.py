"""upload-config, promote and rollback against moto's S3 on 127.0.0.1: diff, idempotence, backups, conflicts."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.aws import client_configs
from tasks.aws import clients as aws
from tasks.contexts.records import RunSummary, TargetRecord
from tasks.contexts.store import Context, ContextStore
from tasks.errors import Conflict, EnvironmentProblem, UsageError
from tasks.flows.config_flows import ConfigFlows
from tasks.local.server import EmbeddedAws, seed
from tasks.settings import Settings
from tests.conftest import run_tasks, safe_environ, settings_for

BUCKET = "vectora-inbox-config-dev"


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def endpoint(settings: Settings) -> Iterator[str]:
    with EmbeddedAws(settings).running() as url:
        seed(aws.ClientFactory.local(settings.region, url).s3(), settings, "dev")
        yield url


@pytest.fixture
def s3(settings: Settings, endpoint: str):
    return aws.ClientFactory.local(settings.region, endpoint).s3()


@pytest.fixture
def flows(contexts_dir: Path, s3, endpoint: str) -> ConfigFlows:
    settings = settings_for(contexts_dir, VECTORA_ENV="dev", AWS_ENDPOINT_URL=endpoint)
    return ConfigFlows(settings, ContextStore(contexts_dir), s3, now)


def passed_locally(store: ContextStore, context: Context) -> Context:
    """Record a passed local run that tested the context's current config bytes (what LocalE2E records)."""
    at = now().isoformat()
    tested = client_configs.sha256(context.config_path.read_bytes())
    run = RunSummary(f"r{len(context.runs) + 1}", "local", "passed", at, at, config_sha256=tested)
    return store.update(context.client_id, lambda current: replace(current, runs=(*current.runs, run), local=run))


def new_context(flows: ConfigFlows, purpose: str = "promote me") -> Context:
    return passed_locally(flows.store, flows.store.create("lai_weekly", purpose, now()))


def dev(flows: ConfigFlows, context: Context) -> TargetRecord:
    """The context's record of dev on the flows' (emulated) endpoint, as stored now."""
    return flows.store.load(context.client_id).target("dev", flows.endpoint)


def key(context: Context) -> str:
    return f"clients/{context.client_id}.yaml"


def body(s3, context: Context) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key(context))["Body"].read()


def edit_config(flows: ConfigFlows, context: Context, text: str) -> Context:
    """Change the context's config file and record it as passed locally again."""
    context.config_path.write_bytes(context.config_path.read_bytes() + text.encode())
    return passed_locally(flows.store, flows.store.load(context.client_id))


def test_promote_creates_the_key_and_records_the_promotion(flows: ConfigFlows, s3) -> None:
    context = new_context(flows)
    outcome = flows.promote(context)
    assert outcome.plan.action == "create"
    assert body(s3, context) == context.config_path.read_bytes()
    promotion = dev(flows, context).promotion
    assert promotion is not None and promotion.sha256 == context.config_sha256 and promotion.forced is False
    assert promotion.replaced is None and promotion.at and promotion.endpoint == flows.endpoint
    assert flows.store.load(context.client_id).target("dev", None).promotion is None  # not the real dev


def test_promoting_identical_content_uploads_nothing(flows: ConfigFlows, s3) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    context = new_context(flows)
    first = flows.promote(context).upload
    second = flows.promote(flows.store.load(context.client_id))
    assert second.plan.action == "unchanged" and second.plan.diff() == ""
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key(context))["Versions"]
    assert first is not None and [v["VersionId"] for v in versions] == [first.version_id]


def test_promote_refuses_without_a_passed_local_run_unless_forced(flows: ConfigFlows, s3) -> None:
    context = flows.store.create("lai_weekly", "never ran", now())
    with pytest.raises(UsageError, match="has no passed local run"):
        flows.promote(context)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="clients/")
    flows.promote(context, force=True)
    promotion = dev(flows, context).promotion
    assert promotion is not None and promotion.forced is True


def test_promote_refuses_a_config_changed_since_its_local_run(flows: ConfigFlows) -> None:
    context = new_context(flows)
    context.config_path.write_bytes(context.config_path.read_bytes() + b"# edited\n")
    with pytest.raises(UsageError, match="config changed since its last passed local run r1"):
        flows.promote(context)


def test_an_edited_config_rerun_locally_can_be_promoted(flows: ConfigFlows, s3) -> None:
    context = edit_config(flows, new_context(flows), "# tuned after review\n")
    flows.promote(context)
    assert body(s3, context).endswith(b"# tuned after review\n")


def test_an_update_on_a_versioned_bucket_keeps_the_previous_version_and_rolls_back(flows: ConfigFlows, s3) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    context = new_context(flows)
    original = context.config_path.read_bytes()
    first = flows.promote(context).upload
    context = edit_config(flows, context, "# tuned\n")
    outcome = flows.promote(context)
    assert outcome.plan.action == "update" and "+# tuned" in outcome.plan.diff()
    assert first and outcome.upload and (outcome.upload.replaced or {})["version_id"] == first.version_id
    assert body(s3, context).endswith(b"# tuned\n")
    result = flows.rollback(flows.store.load(context.client_id))
    assert body(s3, context) == original and result.restored == client_configs.sha256(original)
    assert dev(flows, context).promotion is None


def test_an_update_on_an_unversioned_bucket_backs_up_and_rolls_back(flows: ConfigFlows, s3) -> None:
    context = new_context(flows)
    original = context.config_path.read_bytes()
    flows.promote(context)
    context = edit_config(flows, context, "# tuned\n")
    upload = flows.promote(context).upload
    assert upload is not None and upload.replaced is not None
    backup = Path(upload.replaced["backup"])
    assert backup.read_bytes() == original and backup.is_relative_to(context.path)
    flows.rollback(flows.store.load(context.client_id))
    assert body(s3, context) == original


def test_rolling_back_a_first_upload_removes_the_key_and_versions_still_count(flows: ConfigFlows, s3) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    context = new_context(flows)
    flows.promote(context)
    assert flows.rollback(flows.store.load(context.client_id)).restored is None
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=BUCKET, Key=key(context))
    assert client_configs.used_versions(s3, BUCKET, "clients/{client_id}.yaml", "lai_weekly").versions == [1]
    with pytest.raises(UsageError, match="no upload to dev left to roll back"):
        flows.rollback(flows.store.load(context.client_id))


def test_a_key_this_context_did_not_write_is_never_overwritten(flows: ConfigFlows, s3) -> None:
    context = new_context(flows)
    s3.put_object(Bucket=BUCKET, Key=key(context), Body=b"someone else's config\n")
    with pytest.raises(UsageError, match="this context did not write"):
        flows.promote(context)
    assert body(s3, context) == b"someone else's config\n"
    assert not flows.store.load(context.client_id).targets


def test_a_concurrent_change_is_detected_by_the_conditional_put(flows: ConfigFlows, s3) -> None:
    context = new_context(flows)
    plan = client_configs.plan_upload(s3, BUCKET, key(context), context.config_path.read_bytes(), set(), 10**6)
    s3.put_object(Bucket=BUCKET, Key=key(context), Body=b"written meanwhile\n")
    with pytest.raises(Conflict, match="concurrent change"):
        client_configs.put(s3, plan, context.client_id)
    assert body(s3, context) == b"written meanwhile\n"


def test_a_dry_run_shows_the_plan_and_writes_nothing(flows: ConfigFlows, s3) -> None:
    context = new_context(flows)
    outcome = flows.promote(context, dry_run=True)
    assert outcome.upload is None and outcome.plan.action == "create"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="clients/")
    assert not flows.store.load(context.client_id).targets


def test_a_missing_bucket_is_an_environment_problem(contexts_dir: Path, s3, endpoint: str) -> None:
    settings = settings_for(contexts_dir, VECTORA_ENV="stage", AWS_ENDPOINT_URL=endpoint)
    flows = ConfigFlows(settings, ContextStore(contexts_dir), s3, now)
    with pytest.raises(EnvironmentProblem, match=r"vectora-inbox-config-stage.* not found"):
        flows.promote(new_context(flows))


def test_new_contexts_skip_versions_found_in_s3_history(contexts_dir: Path, s3, endpoint: str) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=BUCKET, Key="clients/lai_weekly_v12.yaml", Body=b"x")
    s3.delete_object(Bucket=BUCKET, Key="clients/lai_weekly_v12.yaml")
    s3.put_object(Bucket=BUCKET, Key="clients/other_v40.yaml", Body=b"x")
    env = safe_environ(CONTEXTS_DIR=str(contexts_dir), ALLOCATION_ENVS="dev", AWS_ENDPOINT_URL=endpoint)
    result = run_tasks(env, "context", "new")
    assert (result.returncode, result.stdout) == (0, "lai_weekly_v13\n"), result.stderr


def cli(contexts_dir: Path, endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_tasks(safe_environ(CONTEXTS_DIR=str(contexts_dir), AWS_ENDPOINT_URL=endpoint), *args)


def test_prod_is_never_touched_without_confirmation(flows: ConfigFlows, contexts_dir: Path, s3, endpoint: str) -> None:
    seed(s3, flows.settings, "prod")
    context = new_context(flows)
    refused = cli(contexts_dir, endpoint, "promote", "--client-id", context.client_id, "--env", "prod")
    assert refused.returncode == 2 and "needs confirmation: add --yes" in refused.stderr
    assert "Contents" not in s3.list_objects_v2(Bucket="vectora-inbox-config-prod", Prefix="clients/")
    confirmed = cli(contexts_dir, endpoint, "promote", "--client-id", context.client_id, "--env", "prod", "--yes")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "done: create s3://vectora-inbox-config-prod/" in confirmed.stdout


def test_upload_config_cli_shows_the_diff_and_records_the_upload(
    flows: ConfigFlows, contexts_dir: Path, s3, endpoint: str
) -> None:
    context = new_context(flows)
    created = cli(contexts_dir, endpoint, "upload-config", "--client-id", context.client_id, "--env", "dev")
    assert created.returncode == 0 and "done: create" in created.stdout
    edit_config(flows, context, "# more\n")
    planned = cli(contexts_dir, endpoint, "upload-config", "--client-id", context.client_id, "--dry-run")
    assert "+# more" in planned.stdout and "plan: update" in planned.stdout
    assert not body(s3, context).endswith(b"# more\n")
    record = json.loads((context.path / "context.json").read_text())
    [target] = record["targets"].values()
    assert len(target["uploads"]) == 1 and target["promotion"] is None and target["endpoint"] == endpoint


@pytest.mark.parametrize(
    ("variables", "config", "message"),
    [
        ({"AWS_PROFILE": "no-such-profile"}, "", "AWS profile 'no-such-profile' not found (env dev, profile"),
        ({}, "", "AWS profile 'rag-lai-prod' not found (env dev, profile 'rag-lai-prod' from the team default)"),
        (
            {"AWS_PROFILE": "x", "AWS_PROFILE_DEV": "dev-only"},
            "",
            "AWS profile 'dev-only' not found (env dev, profile 'dev-only' from AWS_PROFILE_DEV)",
        ),
        (
            {},
            "[profile rag-lai-prod]\nregion = eu-west-3\n",
            "no AWS credentials (env dev, profile 'rag-lai-prod' from the team default)",
        ),
    ],
)
def test_missing_credentials_or_profile_are_exit_3_with_what_to_do(
    flows: ConfigFlows, contexts_dir: Path, endpoint: str, tmp_path: Path, variables: dict, config: str, message: str
) -> None:
    context = new_context(flows)
    (tmp_path / "aws-config").write_text(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "CONTEXTS_DIR": str(contexts_dir),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        **variables,
    }
    result = run_tasks(env, "upload-config", "--client-id", context.client_id)
    assert result.returncode == 3, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
