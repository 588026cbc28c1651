"""The team's workflow through make against `make local-aws`: edit and rerun, promote, E2E, pull a client promoted
elsewhere, and emulated envs kept apart from the real ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tasks.aws import clients as aws
from tasks.contexts.store import ContextStore
from tests.conftest import local_aws_server, make


def context_json(clone: Path, client_id: str) -> dict:
    return json.loads((clone / "contexts" / client_id / "context.json").read_text())


def test_edit_rerun_promote_e2e_pull_and_emulated_envs(clone: Path) -> None:
    with local_aws_server(clone) as flows:
        endpoint = flows["AWS_ENDPOINT_URL"]
        assert make(clone, "local-e2e", "PURPOSE=team workflow").returncode == 0
        client_id = max(ContextStore(clone / "contexts").list(), key=lambda c: c.created_at).client_id
        config = clone / "contexts" / client_id / "client_config.yaml"

        # Item 2: an edited config is refused until a local run tests those bytes, then promoted.
        config.write_text(config.read_text() + "# tuned after review\n")
        refused = make(clone, "promote", "ENV=dev", f"CLIENT_ID={client_id}", **flows)
        assert refused.returncode == 2 and "changed since its last passed local run" in refused.stderr
        assert make(clone, "local-e2e", f"CLIENT_ID={client_id}").returncode == 0
        promoted = make(clone, "promote", "ENV=dev", f"CLIENT_ID={client_id}", **flows)
        assert promoted.returncode == 0, promoted.stderr
        assert f"on custom endpoint {endpoint}" in promoted.stdout  # where it was written
        ran = make(clone, "aws-e2e", "ENV=dev", f"CLIENT_ID={client_id}", **flows)
        assert ran.returncode == 0, ran.stdout + ran.stderr

        # Item 3: the emulated dev is recorded apart and never counts as the real dev.
        record = context_json(clone, client_id)
        assert list(record["targets"]) == [f"dev@{endpoint}"]
        listed = make(clone, "contexts").stdout
        assert "dev(emulated)" in listed and " dev " not in listed
        assert "dev(emulated): passed" in make(clone, "report").stdout
        real = make(clone, "aws-e2e", "ENV=dev", "DRY_RUN=1")  # no endpoint: the real dev, where nothing was promoted
        assert real.returncode == 2 and "no context promoted to dev" in real.stderr

        # Item 1: a teammate's machine has no such context: aws-e2e pulls it from the env's S3, then runs it.
        shutil.rmtree(clone / "contexts" / client_id)
        pulled_run = make(clone, "aws-e2e", "ENV=dev", f"CLIENT_ID={client_id}", **flows)
        assert pulled_run.returncode == 0, pulled_run.stdout + pulled_run.stderr
        assert f"no context {client_id} here: pulled s3://vectora-inbox-config-dev/clients/{client_id}.yaml" in (
            pulled_run.stdout
        )
        pulled = context_json(clone, client_id)["pulled"]
        assert (pulled["env"], pulled["endpoint"]) == ("dev", endpoint)
        assert pulled["sha256"] == context_json(clone, client_id)["config_sha256"] and pulled["version_id"]
        assert config.read_text().endswith("# tuned after review\n")  # the promoted bytes, exactly
        again = make(clone, "pull", "ENV=dev", f"CLIENT_ID={client_id}", **flows)
        assert again.returncode == 2 and "already a context here" in again.stderr

        # A pulled context counts in client_id allocation.
        s3 = aws.ClientFactory.local("eu-west-3", endpoint).s3()
        other = config.read_bytes().replace(client_id.encode(), b"lai_weekly_v40")
        s3.put_object(Bucket="vectora-inbox-config-dev", Key="clients/lai_weekly_v40.yaml", Body=other)
        alone = make(clone, "pull", "ENV=dev", "CLIENT_ID=lai_weekly_v40", **flows)
        assert alone.returncode == 0 and "pulled lai_weekly_v40 from" in alone.stdout, alone.stderr
        created = make(clone, "new-context")
        assert created.stdout.strip().splitlines()[-1] == "lai_weekly_v41", created.stdout + created.stderr
        missing = make(clone, "pull", "ENV=dev", "CLIENT_ID=lai_weekly_v77", **flows)
        assert missing.returncode == 2 and "no s3://vectora-inbox-config-dev/clients/lai_weekly_v77.yaml" in (
            missing.stderr
        )
