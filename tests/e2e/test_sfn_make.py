"""`make sfn-deploy` against `make local-aws`, in a temporary copy of the repository: dry run, create, nothing to do,
a diff on redeploy, prod confirmed, the role required on the real env; then an execution of what was deployed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tasks.aws import clients as aws
from tasks.aws import state_machines
from tasks.sfn import definition
from tests.conftest import REPO, local_aws_server, make

ARN = "arn:aws:states:eu-west-3:123456789012:stateMachine:vectora-inbox-e2e-v2-dev"


def _last_lines(result: subprocess.CompletedProcess[str]) -> str:
    out = result.stdout + result.stderr
    return "\n".join(line for line in out.splitlines() if not line.startswith("nox > "))


def test_make_sfn_deploy_plans_creates_diffs_and_says_nothing_to_do(clone: Path) -> None:
    folder = clone / "contexts" / "state-machines" / "dev"
    with local_aws_server(clone) as aws_env:
        dry = make(clone, "sfn-deploy", "ENV=dev", "DRY_RUN=1", **aws_env)
        assert dry.returncode == 0, _last_lines(dry)
        assert f"plan: create {ARN}" in dry.stdout and "+++ " + ARN in dry.stdout
        written = json.loads((folder / "state-machine.asl.json").read_text())  # left for review
        assert written["States"]["inline: clients"]["MaxConcurrency"] == 4
        assert "AWS::Serverless::StateMachine" in (folder / "state-machine.sam.yaml").read_text()
        assert '"lambda:InvokeFunction"' in dry.stdout and '"iam:PassRole"' in dry.stdout
        again = make(clone, "sfn-deploy", "ENV=dev", "DRY_RUN=1", **aws_env)
        assert f"plan: create {ARN}" in again.stdout  # the dry run deployed nothing

        created = make(clone, "sfn-deploy", "ENV=dev", **aws_env)
        assert created.returncode == 0 and f"done: create {ARN}" in created.stdout, _last_lines(created)
        same = make(clone, "sfn-deploy", "ENV=dev", **aws_env)
        assert f"done: nothing to do: identical definition and role {ARN}" in same.stdout, _last_lines(same)
        assert "--- " not in same.stdout

        changed = make(clone, "sfn-deploy", "ENV=dev", "PARALLEL=6", **aws_env)
        assert changed.returncode == 0 and f"done: update {ARN}" in changed.stdout, _last_lines(changed)
        assert '-      "MaxConcurrency": 4,\n+      "MaxConcurrency": 6,' in changed.stdout

        too_many = make(clone, "sfn-deploy", "ENV=dev", "PARALLEL=41", **aws_env)
        assert "error: PARALLEL=41: expected 1 to 40 clients at a time" in too_many.stderr
        assert "exit 2: usage or bad input" in too_many.stderr

        prod = make(clone, "sfn-deploy", "ENV=prod", **aws_env)
        assert "error: deploy the state machine on prod needs confirmation: add CONFIRM_PROD=1" in prod.stderr

        # What was deployed runs the three local handlers when an execution starts against `make local-aws`.
        endpoint = aws_env["AWS_ENDPOINT_URL"]
        factory = aws.ClientFactory.local("eu-west-3", endpoint)
        config = (REPO / "contexts" / "templates" / "lai_weekly.yaml").read_bytes()
        factory.s3().put_object(Bucket="vectora-inbox-config-dev", Key="clients/lai_weekly_v1.yaml", Body=config)
        sfn = factory.sfn()
        started = state_machines.start_execution(
            sfn, ARN, "run-make", definition.execution_input(["lai_weekly_v1"], {}, "run-make")
        )
        done = state_machines.wait(sfn, started, timeout_s=120)
        assert done["status"] == "SUCCEEDED"
        assert json.loads(done["output"]) == [{"client_id": "lai_weekly_v1", "status": "passed"}]


def test_make_sfn_deploy_on_a_real_env_needs_the_execution_role(clone: Path) -> None:
    result = make(clone, "sfn-deploy", "ENV=dev")  # no endpoint: the real dev, and no SFN_ROLE_ARN
    assert result.returncode != 0
    assert "error: SFN_ROLE_ARN is not set: set it (in .env or the environment)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-2] == "exit 2: usage or bad input"
    bad = make(clone, "sfn-deploy", "ENV=dev", SFN_ROLE_ARN="role/x")
    assert "error: SFN_ROLE_ARN='role/x': expected an IAM role ARN" in bad.stderr
