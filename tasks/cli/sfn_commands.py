"""sfn-deploy: the env's Step Functions state machine, generated, diffed, created or updated; its IAM printed."""

from __future__ import annotations

import argparse
import json
import os

from tasks.cli.common import client_factory, confirm_prod, env_settings
from tasks.errors import EXIT_PASSED


def sfn_deploy_command(args: argparse.Namespace) -> int:
    from tasks.flows import sfn_deploy
    from tasks.sfn import templates

    settings = env_settings(args)
    role = templates.role_arn(settings)  # before any AWS call: a missing setting says so, not missing credentials
    if not args.dry_run:
        confirm_prod(settings, args.yes, "deploy the state machine")
    sfn = client_factory(settings).sfn()
    deploy = sfn_deploy.plan(settings, sfn, args.parallel, role)
    where = f"custom endpoint {deploy.endpoint}" if deploy.endpoint else "AWS"
    print(f"state machine {deploy.name} on {settings.env} ({where})")
    diff = deploy.diff()
    if diff:
        print(diff, end="" if diff.endswith("\n") else "\n")
    if not args.dry_run:
        sfn_deploy.apply(sfn, deploy)
    done = {"create": "create", "update": "update", "unchanged": "nothing to do: identical definition and role"}
    print(f"{'plan' if args.dry_run else 'done'}: {done[deploy.action]} {deploy.arn}")
    for path in sfn_deploy.write_files(settings, deploy):
        print(f"{'SAM template' if path.suffix == '.yaml' else 'definition'}: {os.path.relpath(path)}")
    print("IAM, least privilege:")
    print(f"  the execution role {deploy.role_arn}:")
    print("    " + json.dumps(templates.execution_role_policy(settings, deploy.role_arn)))
    print("  whoever deploys and runs it:")
    print("    " + json.dumps(templates.caller_policy(settings, deploy.role_arn, deploy.name)), flush=True)
    return EXIT_PASSED
