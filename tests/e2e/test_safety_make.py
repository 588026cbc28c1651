"""The safety suite through `make` itself: what a user can type or do to a make target, in a copy of the repository.

Every refusal is one `error:` line and an `exit N:` line, never a traceback; no value given to make is ever expanded,
spliced into a shell command or changed on its way to the task.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MAKE, make, make_environ

INJECTED = "touched"  # the file an injected command would create in the clone
QUOTE_INJECTION = f'x"; touch {INJECTED}; echo "'
MAKE_VARS = (
    "CLIENT_ID CLIENT_IDS PURPOSE TEMPLATE PAYLOAD FROM PARALLEL PORT RUNS ONLY DRY_RUN FORCE JSON PUBLISH ENV "
    "CONFIRM_PROD PYTHON"
).split()
CLOSED_PORT = "http://127.0.0.1:9"  # any AWS call fails here: a refusal before it proves nothing was sent


@pytest.fixture(autouse=True)
def nothing_injected(clone: Path) -> Iterator[None]:
    """No test here may leave the injection marker behind, whatever it typed."""
    (clone / INJECTED).unlink(missing_ok=True)
    yield
    assert not (clone / INJECTED).exists(), "a value given to make ran as a command"


def refused(result: subprocess.CompletedProcess[str], code: int) -> str:
    """Assert make failed with the task's `error:` line, then `exit code:` last, and no traceback; return stderr."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    *before, exit_line, make_line = result.stderr.strip().splitlines()
    assert any(line.startswith("error: ") or ": error: " in line for line in before), result.stderr
    assert exit_line.startswith(f"exit {code}: ") and make_line.startswith("make: ***"), result.stderr
    return result.stderr


def new_context(clone: Path, *args: str, **shell: str) -> str:
    result = make(clone, "new-context", *args, **shell)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def record(clone: Path, client_id: str) -> dict:
    return json.loads((clone / "contexts" / client_id / "context.json").read_text())


def newest_run(clone: Path, client_id: str) -> dict:
    return json.loads(
        (
            clone / "contexts" / client_id / "runs" / record(clone, client_id)["runs"][-1]["run_id"] / "run.json"
        ).read_text()
    )


# Item 2: no value given to make runs as a command, and each reaches the task byte for byte.


@pytest.mark.parametrize("target", ["upload-config", "rollback"])
def test_quotes_in_client_id_are_not_a_shell_command(clone: Path, target: str) -> None:
    stderr = refused(make(clone, target, "ENV=dev", f"CLIENT_ID={QUOTE_INJECTION}"), 2)
    assert f"malformed client_id {QUOTE_INJECTION!r}" in stderr


def test_quotes_in_client_ids_are_not_a_shell_command(clone: Path) -> None:
    assert "malformed client_id" in refused(make(clone, "compare", f"CLIENT_IDS={QUOTE_INJECTION} *"), 2)


def test_make_functions_in_any_variable_are_never_expanded(clone: Path) -> None:
    result = make(clone, "contexts", *(f"{name}=$(shell touch {INJECTED})" for name in MAKE_VARS))
    assert result.returncode == 0, result.stderr


def test_an_expanded_client_id_is_refused_not_emptied_into_a_new_context(clone: Path) -> None:
    before = sorted(p.name for p in (clone / "contexts").iterdir())
    stderr = refused(make(clone, "local-e2e", f"CLIENT_ID=$(shell touch {INJECTED})"), 2)
    assert f"malformed client_id '$(shell touch {INJECTED})'" in stderr
    assert sorted(p.name for p in (clone / "contexts").iterdir()) == before


@pytest.mark.parametrize("purpose", [f"$(shell touch {INJECTED})ok", "price $100 and $$x", "--help", "a\\b 'c' \"d\""])
def test_a_purpose_reaches_the_context_byte_for_byte(clone: Path, purpose: str) -> None:
    assert record(clone, new_context(clone, f"PURPOSE={purpose}"))["purpose"] == purpose


# Item 10: the shell's variables of the same names steer nothing; only the command line counts (as for ENV).


def test_shell_variables_do_not_steer_make_targets(clone: Path) -> None:
    shell = {"CLIENT_ID": "lai_weekly_v999", "PURPOSE": "from the shell", "TEMPLATE": "nope", "PAYLOAD": "{"}
    client_id = new_context(clone, **shell)
    assert record(clone, client_id)["purpose"] != "from the shell"
    result = make(clone, "local-e2e", **shell)
    assert result.returncode == 0, result.stderr
    assert "lai_weekly_v999" not in result.stdout + result.stderr


# Item 1: secrets holding quotes, backslashes, non-ASCII and markup characters stay out of every file.


def test_secrets_with_special_characters_reach_no_file(clone: Path, tmp_path: Path) -> None:
    secret = 'canary"quote\\back-é-<&>-zqxv'
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    (leaky / "leak.txt").write_text(secret, encoding="utf-8")
    (leaky / "handler.py").write_text(
        "import json, pathlib\n"
        "def lambda_handler(event, context):\n"
        "    secret = pathlib.Path(__file__).with_name('leak.txt').read_text(encoding='utf-8')\n"
        "    print('raw', secret, 'as json', json.dumps({'token': secret}))\n"
        "    raise RuntimeError('login failed for token ' + secret)\n"
    )
    summary = tmp_path / "step-summary.md"
    result = make(
        clone,
        "local-e2e",
        "PURPOSE=secrets",
        VENDOR_API_TOKEN=secret,
        LOCAL_HANDLER_NEWSLETTER=f"{leaky}:handler.lambda_handler",
        GITHUB_STEP_SUMMARY=str(summary),
    )
    assert result.returncode != 0 and "login failed for token ***" in result.stdout + result.stderr
    written = {p: p.read_text(encoding="utf-8") for p in (clone / "contexts").rglob("*") if p.is_file()}
    written[summary] = summary.read_text(encoding="utf-8")
    assert {p.name for p, text in written.items() if "login failed for token ***" in text} >= {
        "run.json",
        "report.md",
        "report.html",
        "junit.xml",
        "workflow.log",
        summary.name,
    }
    for path, text in [*written.items(), ("output", result.stdout + result.stderr)]:
        # In no form: raw, JSON- or HTML/XML-escaped (zqxv: no number in a report can hold it, unlike digits).
        assert "canary" not in text and "zqxv" not in text, path


# Items 3 and 4: a broken or foreign context folder is named and refused; lists show it as broken and go on.

BREAKAGES = {
    "truncated": lambda text: text[: len(text) // 2],
    "a list": lambda text: "[]",
    "a missing key": lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "status"}),
    "wrong types": lambda text: json.dumps(json.loads(text) | {"runs": "none", "envs": []}),
}


def test_broken_contexts_are_listed_as_broken_and_refused_by_name(clone: Path) -> None:
    good = new_context(clone, "PURPOSE=good")
    broken = {}
    for what, breakage in BREAKAGES.items():
        client_id = new_context(clone, f"PURPOSE={what}")
        path = clone / "contexts" / client_id / "context.json"
        path.write_text(breakage(path.read_text()))
        broken[client_id] = what
    listed = make(clone, "contexts")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines() if line.startswith("lai_weekly_v")}
    assert "broken" not in rows[good]
    for client_id in broken:
        assert rows[client_id].split()[1] == "broken" and f"{client_id}/context.json" in rows[client_id]
    summary = make(clone, "report")
    assert summary.returncode == 0 and f"`{good}`" in summary.stdout, summary.stderr
    assert all(f"| `{client_id}` | broken: " in summary.stdout for client_id in broken)
    for client_id in broken:
        stderr = refused(make(clone, "local-e2e", f"CLIENT_ID={client_id}"), 2)
        assert f"contexts/{client_id}/context.json: " in stderr
        assert not (clone / "contexts" / client_id / "runs").exists()  # no run left `running`


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_context_folder_that_leads_elsewhere_or_names_another_client_is_refused(clone: Path, tmp_path: Path) -> None:
    contexts = clone / "contexts"
    elsewhere = tmp_path / "elsewhere"
    linked = new_context(clone, "PURPOSE=linked")
    shutil.move(contexts / linked, elsewhere)
    (contexts / linked).symlink_to(elsewhere)
    copied = new_context(clone, "PURPOSE=original")
    foreign = f"{copied}0"
    shutil.copytree(contexts / copied, contexts / foreign)
    before = snapshot(elsewhere)
    for client_id, problem in [(linked, "is a symlink"), (foreign, f"names client_id {copied!r}")]:
        for target in ("local-e2e", "report"):
            assert problem in refused(make(clone, target, f"CLIENT_ID={client_id}"), 2)
    assert snapshot(elsewhere) == before and not (contexts / foreign / "runs").exists()
    rows = make(clone, "contexts").stdout
    assert f"{linked:<22} broken" in rows and f"{foreign:<22} broken" in rows


# Items 5, 6 and 7: bad values and files are one error line and a documented code, never a traceback.


@pytest.mark.parametrize("port", ["65536", "-5", "http"])
def test_a_port_out_of_range_is_bad_input(clone: Path, port: str) -> None:
    assert "expected a port number from 0 to 65535" in refused(make(clone, "local-aws", f"PORT={port}"), 2)


def test_an_endpoint_that_is_not_a_url_is_bad_input(clone: Path) -> None:
    stderr = refused(make(clone, "report", "ENV=dev", AWS_ENDPOINT_URL="not a url"), 2)
    assert "AWS_ENDPOINT_URL='not a url': expected a URL" in stderr


def test_a_dotenv_that_is_not_utf8_names_file_and_line(clone: Path) -> None:
    (clone / ".env").write_bytes(b"AWS_REGION=eu-west-3\nPURPOSE=caf\xe9\n")
    try:
        stderr = refused(make(clone, "contexts"), 2)
    finally:
        (clone / ".env").unlink()
    assert f"{clone}/.env:2: not UTF-8 text" in stderr


@pytest.mark.parametrize(
    "payload, problem",
    [
        ('{"period_days": NaN}', "NaN is not allowed"),
        ('{"period_days": Infinity}', "Infinity is not allowed"),
        ('{"period_days": 1e999}', "1e999 is too large for a number"),
        ("[" * 20_000 + "]" * 20_000, "nested too deeply"),
        ("[" * 200 + "]" * 200, "nested too deeply (more than 100 levels)"),  # parsed, then too deep to walk
    ],
    ids=["nan", "infinity", "overflow", "nested", "nested-200"],
)
def test_payloads_strict_parsers_would_reject_are_refused(clone: Path, payload: str, problem: str) -> None:
    client_id = new_context(clone)
    result = make(clone, "aws-e2e", "ENV=dev", f"CLIENT_ID={client_id}", f"PAYLOAD={payload}", "DRY_RUN=1")
    assert problem in refused(result, 2)


def test_a_run_json_that_is_not_json_is_named_and_the_summary_goes_on(clone: Path) -> None:
    assert make(clone, "local-e2e", "PURPOSE=run then break").returncode == 0
    client_id = max((p for p in (clone / "contexts").iterdir() if p.name.startswith("lai_")), key=os.path.getmtime).name
    run_json = next((clone / "contexts" / client_id / "runs").glob("*/run.json"))
    run_json.write_text('{"run_id": ')
    assert f"{run_json}: " in refused(make(clone, "report", f"CLIENT_ID={client_id}"), 2)
    summary = make(clone, "report")  # the summary reads context.json only: the broken run.json does not stop it
    assert summary.returncode == 0 and f"| `{client_id}` | run then break | local: passed |" in summary.stdout


def test_control_characters_in_a_purpose_are_escaped_in_the_list(clone: Path) -> None:
    client_id = new_context(clone, "PURPOSE=clear \x1b[2J\x1b]0;owned\x07 screen")
    listed = make(clone, "contexts").stdout
    row = next(line for line in listed.splitlines() if line.startswith(client_id + " "))
    assert "\x1b" not in listed and "\x07" not in listed
    assert row.endswith("clear \\x1b[2J\\x1b]0;owned\\x07 screen")


# Items 8 and 11: signals end make with the signal's code and our `exit N:` line; a kill -9 leaves nothing behind.


def start_make(clone: Path, *args: str, **variables: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*MAKE, *args],
        cwd=clone,
        env=make_environ(**variables),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, child: subprocess.Popen[str]) -> int:
    """The pid written to path, once it is."""
    deadline = time.monotonic() + 60
    while not (path.exists() and path.read_text()) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(path.read_text())


def test_sigterm_ends_a_run_like_ctrl_c_with_exit_143(clone: Path, slow_handler: Path) -> None:
    child = start_make(clone, "local-e2e", LOCAL_HANDLER_INGEST=f"{slow_handler}:handler.lambda_handler")
    runner = wait_for(slow_handler / "runner", child)
    os.kill(runner, signal.SIGTERM)  # nox (the task runs in its process), as a CI timeout or `docker stop` would
    _, stderr = child.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr
    assert "exit 143: terminated (SIGTERM)" in stderr and "Error 143" in stderr, stderr
    client_id = max((p for p in (clone / "contexts").iterdir() if p.name.startswith("lai_")), key=os.path.getmtime).name
    run = newest_run(clone, client_id)
    assert run["status"] == "interrupted" and run["exit_code"] == 143


def test_ctrl_c_while_starting_is_exit_130_without_a_traceback(clone: Path, tmp_path: Path) -> None:
    slow = tmp_path / "slow_import" / "dotenv"  # the first third-party module the command line imports
    slow.mkdir(parents=True)
    (slow / "__init__.py").write_text(
        "import os, pathlib, time\npathlib.Path(os.environ['STARTED']).write_text(str(os.getpid()))\ntime.sleep(60)\n"
    )
    started = tmp_path / "started"
    child = start_make(clone, "contexts", PYTHONPATH=str(slow.parent), STARTED=str(started))
    os.kill(wait_for(started, child), signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert "exit 130: interrupted" in stderr and "Error 130" in stderr, stderr


def test_a_bug_in_the_toolkit_is_a_traceback_and_the_exit_1_line(clone: Path, tmp_path: Path) -> None:
    """An exception no command turns into an error line (a bug) still ends with `exit 1: ...`, as under python."""
    broken = tmp_path / "broken_import" / "dotenv"  # the first third-party module the command line imports
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise RuntimeError('a bug in an import')\n")
    result = make(clone, "contexts", PYTHONPATH=str(broken.parent))
    assert result.returncode == 2 and "RuntimeError: a bug in an import" in result.stderr, result.stderr
    assert "exit 1: a step or a check failed" in result.stderr and "Error 1" in result.stderr, result.stderr


def test_a_killed_runner_ends_make_with_its_killed_line_and_its_leftovers_go_on_the_next_start(
    clone: Path, slow_handler: Path, tmp_path: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    child = start_make(
        clone, "local-e2e", LOCAL_HANDLER_INGEST=f"{slow_handler}:handler.lambda_handler", TMPDIR=str(tmp)
    )
    runner = wait_for(slow_handler / "runner", child)
    os.kill(runner, signal.SIGKILL)  # nox, running the task in its own process: nothing of ours is left to speak
    _, stderr = child.communicate(timeout=60)
    os.kill(int((slow_handler / "pid").read_text()), signal.SIGKILL)  # the orphaned handler, in its own session
    assert child.returncode == 2 and stderr.rstrip().endswith("local-e2e] Killed"), stderr
    assert list(tmp.glob("vectora-lambda-*"))  # the killed runner's invocation folder
    assert make(clone, "local-e2e", "PURPOSE=after a kill -9", TMPDIR=str(tmp)).returncode == 0
    assert list(tmp.glob("vectora-lambda-*")) == []
