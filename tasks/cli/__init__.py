"""The command line: argparse subcommands. The only place that prints and picks exit codes."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from tasks.cli.common import ROOT
from tasks.cli.config_commands import promote_command, pull_command, rollback_command, upload_config_command
from tasks.cli.context_commands import context_list_command, context_new_command, context_show_command
from tasks.cli.parser import build_parser
from tasks.cli.recording_commands import recordings_command
from tasks.cli.report_commands import report_command
from tasks.cli.run_commands import aws_e2e_command, local_aws_command, local_e2e_command
from tasks.cli.sfn_commands import sfn_deploy_command
from tasks.errors import EXIT_INTERRUPTED, EXIT_MEANINGS, EXIT_PASSED, ToolkitError, as_toolkit_error
from tasks.interface import for_interface, print_exit_line
from tasks.masking import RedactingStream
from tasks.settings import load_settings
from tasks.signals import interrupted_code


def _mask_secrets_in_output() -> None:
    """Mask the values of secret-named variables (.env, environment, the functions' env-vars file) and show control
    characters as escapes in everything this process prints."""
    try:
        secrets = load_settings(ROOT).secrets
    except ToolkitError:
        secrets = ()  # the command reports the broken setting itself
    sys.stdout = RedactingStream(sys.stdout, secrets)
    sys.stderr = RedactingStream(sys.stderr, secrets)


COMMANDS = {
    ("context", "new"): context_new_command,
    ("context", "list"): context_list_command,
    ("context", "show"): context_show_command,
    ("local-e2e", None): local_e2e_command,
    ("upload-config", None): upload_config_command,
    ("promote", None): promote_command,
    ("rollback", None): rollback_command,
    ("pull", None): pull_command,
    ("aws-e2e", None): aws_e2e_command,
    ("local-aws", None): local_aws_command,
    ("sfn-deploy", None): sfn_deploy_command,
    ("report", None): report_command,
    ("recordings", None): recordings_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code. A failing command's last line is `exit N: meaning`."""
    _mask_secrets_in_output()  # argparse's own messages echo what was typed: they go through it too
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = COMMANDS[(args.command, getattr(args, "context_command", None))]
    try:
        code = handler(args)
    except (ToolkitError, OSError) as err:
        problem = as_toolkit_error(err)
        if args.debug:
            traceback.print_exc()
        print(f"error: {for_interface(str(problem))}", file=sys.stderr)
        code = problem.exit_code
    except KeyboardInterrupt:
        code = interrupted_code()
        print(f"{EXIT_MEANINGS[code]}: stopped waiting (a Lambda already invoked may still complete)", file=sys.stderr)
    if code == EXIT_INTERRUPTED:
        code = interrupted_code()  # a step that caught the interruption reports 130, even after a SIGTERM
    if code != EXIT_PASSED:
        print_exit_line(code)
    return code
