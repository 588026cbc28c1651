"""The real `make` flows in a temporary copy of the repository, reusing the .venv already built (no installs)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import REPO, local_aws_server, make, safe_environ


def test_make_local_e2e_creates_a_context_and_passes(clone: Path) -> None:
    result = make(
        clone,
        "local-e2e",
        'PURPOSE=check "quotes"\nand a second line',  # make variables count only on the command line
        GITHUB_STEP_SUMMARY=str(clone / "step-summary.md"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "context lai_weekly_v1" in result.stdout
    for index, step in enumerate(("ingest", "normalize-score", "newsletter"), start=1):
        assert f"step {index}/3 {step}" in result.stdout
    report_line = next(line for line in result.stdout.splitlines() if line.startswith("report: "))
    report = clone / report_line.removeprefix("report: ")
    run = json.loads((report.parent / "run.json").read_text())
    assert run["status"] == "passed" and run["client_id"] == "lai_weekly_v1"
    assert [s["status"] for s in run["steps"]] == ["passed"] * 3
    assert "PASSED" in report.read_text()
    newsletter = (report.parent / "outputs" / "newsletter" / "newsletter.md").read_text()
    assert "## " in newsletter and newsletter.count("### ") >= 3
    context = json.loads((clone / "contexts" / "lai_weekly_v1" / "context.json").read_text())
    assert context["purpose"] == 'check "quotes"\nand a second line'
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("run.json", "report.md", "report.html", "junit.xml", "workflow.log"):
        assert (report.parent / name).stat().st_size > 0
        assert stat.S_IMODE((report.parent / name).stat().st_mode) == 0o666 & ~umask, name  # the umask, not 0600
    suite = ET.parse(report.parent / "junit.xml").getroot().find("testsuite")
    assert len(suite.findall("testcase")) == 1 + 3 + 5 + 13 and suite.get("failures") == "0"  # run, per step
    assert "# E2E run" in (clone / "step-summary.md").read_text()  # GITHUB_STEP_SUMMARY got the report


def test_make_local_e2e_with_client_id_reruns_that_context(clone: Path) -> None:
    result = make(clone, "local-e2e", "CLIENT_ID=lai_weekly_v1")
    assert result.returncode == 0, result.stdout + result.stderr
    # The task runs in nox's process: nox's DEBUG logging must not reach it (boto3 would print every request).
    assert [line for line in result.stderr.splitlines() if not line.startswith("nox > ")] == [], result.stderr
    assert sorted(p.name for p in (clone / "contexts").iterdir()) == ["lai_weekly_v1", "templates"]
    assert len(list((clone / "contexts" / "lai_weekly_v1" / "runs").iterdir())) == 2
    listed = make(clone, "contexts")
    assert "lai_weekly_v1" in listed.stdout and "passed" in listed.stdout


def test_make_reports_the_exit_code_of_bad_input(clone: Path) -> None:
    result = make(clone, "local-e2e", "CLIENT_ID=../etc")
    assert result.returncode != 0
    assert "malformed client_id '../etc'" in result.stderr
    *_, exit_line, make_line = result.stderr.splitlines()
    assert exit_line == "exit 2: usage or bad input"  # the task's last line; make then adds its own
    assert make_line.startswith("make: ***")
    assert "Traceback" not in result.stderr


def test_a_dotenv_syntax_error_names_file_and_line(clone: Path) -> None:
    (clone / ".env").write_text("AWS_REGION=eu-west-3\nthis line is wrong\n")
    try:
        result = make(clone, "contexts")
    finally:
        (clone / ".env").unlink()
    assert result.returncode != 0
    assert f"{clone}/.env:2: this line is not KEY=value" in result.stderr


def test_make_help_lists_every_target_with_a_line(clone: Path) -> None:
    result = make(clone, "help")
    targets = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert {"local-e2e", "new-context", "context", "contexts", "test", "lint", "help"} <= targets


def test_promote_then_aws_e2e_against_make_local_aws(clone: Path) -> None:
    """The AWS flows end to end on a machine with no account: `make local-aws` in one terminal, the flows in another."""
    with local_aws_server(clone) as flows:
        assert make(clone, "local-e2e", "CLIENT_ID=lai_weekly_v1").returncode == 0
        promoted = make(clone, "promote", "ENV=dev", "CLIENT_ID=lai_weekly_v1", **flows)
        assert promoted.returncode == 0, promoted.stderr
        assert "done: create s3://vectora-inbox-config-dev/clients/lai_weekly_v1.yaml" in promoted.stdout
        # The same recipe in .env, with no AWS keys in the environment: the values reach boto3 (no profile asked).
        (clone / ".env").write_text("".join(f"{name}={value}\n" for name, value in flows.items()))
        try:
            again = make(
                clone, "promote", "ENV=dev", unset=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
            )
        finally:
            (clone / ".env").unlink()
        assert "nothing to do: identical content" in again.stdout, again.stdout + again.stderr
        ran = make(clone, "aws-e2e", "ENV=dev", **flows)  # default: the latest context promoted to dev
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "step 3/3 newsletter" in ran.stdout and "vectora-inbox-newsletter-v2-dev" in ran.stdout
        assert "not a pass on the real dev" in ran.stdout
        refused = make(clone, "aws-e2e", "ENV=prod", "CLIENT_ID=lai_weekly_v1", **flows)
        assert "needs confirmation: add CONFIRM_PROD=1" in refused.stderr  # make's syntax under make
        rolled = make(clone, "rollback", "ENV=dev", "CLIENT_ID=lai_weekly_v1", **flows)
        assert rolled.returncode == 0 and "removed the key" in rolled.stdout
        missing = make(clone, "aws-e2e", "ENV=dev", "CLIENT_ID=lai_weekly_v1", **flows)
        assert "promote the context first" in missing.stderr


def test_make_report_summarizes_rerenders_and_compares(clone: Path) -> None:
    assert make(clone, "local-e2e", "PURPOSE=second context").returncode == 0
    summary = make(clone, "report")
    assert summary.returncode == 0, summary.stderr
    assert "| `lai_weekly_v1` |" in summary.stdout and "✅ PASSED" in summary.stdout
    run_dir = next((clone / "contexts" / "lai_weekly_v1" / "runs").iterdir())
    (run_dir / "report.html").unlink()
    rendered = make(clone, "report", "CLIENT_ID=lai_weekly_v1")
    assert rendered.returncode == 0 and "# E2E run" in rendered.stdout
    assert any((p / "report.html").is_file() for p in (clone / "contexts" / "lai_weekly_v1" / "runs").iterdir())
    versions = [int(p.name.rsplit("_v", 1)[1]) for p in (clone / "contexts").iterdir() if p.name.startswith("lai_")]
    newest = f"lai_weekly_v{max(versions)}"
    compared = make(clone, "compare", f"CLIENT_IDS=lai_weekly_v1 {newest}")
    assert compared.returncode == 0, compared.stderr
    assert f"| | `lai_weekly_v1` | `{newest}` |" in compared.stdout
    assert "(+" in compared.stdout or "(-" in compared.stdout
    as_json = make(clone, "report", "JSON=1")
    assert json.loads(as_json.stdout[as_json.stdout.index("[") :])[0]["client_id"] == "lai_weekly_v1"


def test_make_local_e2e_fails_a_pipeline_that_answers_success_without_data(clone: Path) -> None:
    result = make(clone, "local-e2e", 'PAYLOAD={"simulate": "bedrock_down"}')
    assert result.returncode == 2, result.stdout + result.stderr  # make's own code; ours is on the last line
    assert "exit 1: a step or a check failed" in result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("step 2/3 normalize-score"))
    assert "failed" in line and "checks 3/5" in line and "not_normalized_share" in line and "expected <= 10%" in line


def test_ctrl_c_during_a_command_that_handles_it_ends_nox_with_130(tmp_path: Path) -> None:
    """pytest answers Ctrl-C with its own exit code (2): nox must still stop and say it was interrupted."""
    started = tmp_path / "started"
    (tmp_path / "test_slow.py").write_text(
        f"import pathlib, time\ndef test_slow():\n    pathlib.Path({str(started)!r}).touch()\n    time.sleep(60)\n"
    )
    sessions = ["-f", str(REPO / "noxfile.py"), "-s", "tests", "lint"]
    pytest_args = ["--", "-n", "0", "-p", "no:cacheprovider", str(tmp_path / "test_slow.py")]
    nox = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "nox", *sessions, *pytest_args],
        cwd=REPO,
        env=safe_environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(nox.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    _, stderr = nox.communicate(timeout=60)
    assert nox.returncode == 130 and "exit 130: interrupted" in stderr, stderr
    assert "Running session lint" not in stderr  # it stopped there, as a shell would


def test_a_handler_that_does_not_compile_fails_its_step_not_make(clone: Path) -> None:
    """make compiles the toolkit's bytecode first; a sample handler's syntax error is a test case, not make's error."""
    handler = clone / "lambdas" / "ingest" / "handler.py"
    source = handler.read_text()
    handler.write_text(source + "\ndef broken(:\n")
    try:
        result = make(clone, "local-e2e", "PURPOSE=a handler that does not compile")
    finally:
        handler.write_text(source)
    assert "exit 1: a step or a check failed" in result.stderr, result.stdout + result.stderr
    assert "Runtime.UserCodeSyntaxError" in result.stdout + result.stderr
