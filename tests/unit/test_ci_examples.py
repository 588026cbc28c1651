"""The CI examples a team copies (examples/ci/): their structure, parsed with PyYAML."""

from __future__ import annotations

from typing import Any

import yaml

from tests.conftest import REPO

EXAMPLES = REPO / "examples" / "ci"


def _load(name: str) -> Any:
    # PyYAML reads GitHub's `on:` key as the boolean True (YAML 1.1).
    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


def _runs(steps: list[dict[str, Any]]) -> str:
    return "\n".join(step.get("run", "") for step in steps)


def _uses(steps: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [step for step in steps if step.get("uses", "").split("@")[0] == action]


def test_github_actions_runs_local_checks_on_pull_requests_and_every_env_nightly() -> None:
    workflow = _load("github-actions.yml")
    triggers = workflow[True]
    assert set(triggers) == {"pull_request", "schedule", "workflow_dispatch"} and triggers["schedule"][0]["cron"]
    local, aws = workflow["jobs"]["local"], workflow["jobs"]["aws"]

    assert local["if"] == "github.event_name == 'pull_request'"
    assert "make local-e2e" in _runs(local["steps"])
    assert "make local-aws" in _runs(local["steps"]) and "make sfn-deploy ENV=dev" in _runs(local["steps"])
    assert "AWS_ENDPOINT_URL=http://127.0.0.1:4566" in _runs(local["steps"])
    assert not _uses(local["steps"], "aws-actions/configure-aws-credentials")  # no account on pull requests

    assert aws["if"] == "github.event_name != 'pull_request'"
    assert aws["strategy"]["matrix"]["env"] == ["dev", "stage"] and aws["strategy"]["fail-fast"] is False
    assert aws["concurrency"]["group"].endswith("${{ matrix.env }}")
    assert aws["permissions"]["id-token"] == "write"
    (credentials,) = _uses(aws["steps"], "aws-actions/configure-aws-credentials")
    assert credentials["with"]["role-to-assume"] and "aws-access-key-id" not in credentials["with"]
    assert 'make aws-e2e ENV="$E2E_ENV" ORCHESTRATOR=sfn' in _runs(aws["steps"])
    assert "$GITHUB_STEP_SUMMARY" in _runs(aws["steps"])

    names = []
    for job in (local, aws):
        (junit,) = _uses(job["steps"], "mikepenz/action-junit-report")
        assert junit["if"] == "always()" and junit["with"]["report_paths"] == "contexts/*/runs/*/junit.xml"
        (upload,) = _uses(job["steps"], "actions/upload-artifact")
        assert upload["if"] == "always()" and upload["with"]["path"] == "contexts/*/runs/"
        names.append(upload["with"]["name"])
        assert "${{ github.run_id }}" in names[-1] and "${{ github.run_attempt }}" in names[-1]
    assert "${{ matrix.env }}" in names[1] and len(set(names)) == 2  # unique per matrix leg


def test_gitlab_ci_publishes_junit_and_runs_every_env_on_schedules() -> None:
    pipeline = _load("gitlab-ci.yml")
    local, aws = pipeline["local-e2e"], pipeline["aws-e2e"]
    assert local["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "merge_request_event"'
    assert any(line.startswith("make local-e2e") for line in local["script"])
    assert "make sfn-deploy ENV=dev" in local["script"]
    assert '"schedule"' in aws["rules"][0]["if"]
    assert aws["parallel"]["matrix"] == [{"E2E_ENV": ["dev", "stage"]}]
    assert aws["resource_group"] == "vectora-inbox-e2e-$E2E_ENV"
    assert aws["id_tokens"]["AWS_ID_TOKEN"]["aud"] == "sts.amazonaws.com"
    assert any("ORCHESTRATOR=sfn" in line for line in aws["script"])
    for job in (local, aws):
        assert job["artifacts"]["when"] == "always"
        assert job["artifacts"]["reports"]["junit"] == "contexts/*/runs/*/junit.xml"
        assert job["artifacts"]["paths"] == ["contexts/*/runs/"]
    assert "$E2E_ENV" in aws["artifacts"]["name"]
