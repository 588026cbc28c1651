"""sfn-deploy: the env's state machine generated, diffed against what is deployed, then created or updated.

Planning reads only (DescribeStateMachine); carrying out creates or updates. Both write the definition and a SAM
template to `contexts/state-machines/<env>/`, so a dry run leaves what it would deploy for review.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.aws import state_machines
from tasks.contexts.files import write_atomic
from tasks.settings import Settings
from tasks.sfn import definition, templates

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

ASL_FILE = "state-machine.asl.json"
SAM_FILE = "state-machine.sam.yaml"


@dataclass(frozen=True)
class DeployPlan:
    """What a deploy would do, worked out with reads only."""

    name: str
    arn: str
    role_arn: str
    document: dict[str, Any]
    deployed: state_machines.Deployed | None
    endpoint: str | None  # None: the real AWS

    @property
    def definition(self) -> str:
        return definition.render(self.document)

    @property
    def deployed_definition(self) -> str:
        """What is deployed, rendered as we render (so a diff shows changes, not formatting)."""
        if self.deployed is None:
            return ""
        try:
            return definition.render(json.loads(self.deployed.definition))
        except ValueError:
            return self.deployed.definition

    @property
    def action(self) -> str:
        if self.deployed is None:
            return "create"
        same = self.deployed_definition == self.definition and self.deployed.role_arn == self.role_arn
        return "unchanged" if same else "update"

    def diff(self) -> str:
        """A unified diff from the deployed definition (and role) to the generated one ('' when identical)."""
        label = self.arn if self.deployed else "/dev/null"
        before = self.deployed_definition.splitlines(keepends=True)
        lines = list(difflib.unified_diff(before, self.definition.splitlines(keepends=True), label, self.arn))
        if self.deployed and self.deployed.role_arn != self.role_arn:
            lines.append(f"role: {self.deployed.role_arn} -> {self.role_arn}\n")
        return "".join(lines)


def folder(settings: Settings) -> Path:
    """Where the env's generated files go (not a context: contexts/ lists only client_id folders)."""
    return settings.contexts_dir / "state-machines" / settings.env


def plan(settings: Settings, sfn: SFNClient, parallel: int, role: str) -> DeployPlan:
    """The generated state machine with its execution role against the deployed one (DescribeStateMachine only)."""
    document = definition.definition(settings, parallel)
    name = definition.state_machine_name(settings)
    arn = templates.state_machine_arn(settings.region, role, name)
    deployed = state_machines.describe(sfn, arn)
    return DeployPlan(name, arn, role, document, deployed, settings.endpoint("stepfunctions"))


def write_files(settings: Settings, deploy: DeployPlan) -> list[Path]:
    """The definition (state-machine.asl.json) and a SAM template holding it, written atomically."""
    target = folder(settings)
    target.mkdir(parents=True, exist_ok=True)
    files = {
        target / ASL_FILE: deploy.definition,
        target / SAM_FILE: templates.sam_template(settings, deploy.name, deploy.document),
    }
    for path, text in files.items():
        write_atomic(path, text.encode("utf-8"))
    return list(files)


def apply(sfn: SFNClient, deploy: DeployPlan) -> str:
    """Carry out the plan; the state machine's ARN."""
    if deploy.action == "create":
        return state_machines.create(sfn, deploy.name, deploy.definition, deploy.role_arn)
    if deploy.action == "update":
        state_machines.update(sfn, deploy.arn, deploy.definition, deploy.role_arn)
    return deploy.arn
