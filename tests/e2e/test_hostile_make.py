"""What a Lambda, a setting or the machine can throw at `make`, in a copy of the repository (issue 18, items 7 to 10;
issue 21, JUnit names): files stay well-formed, escapes never reach the terminal or a file raw, secrets are masked
in every form, bad settings are one `error:` line, and a full disk leaves run.json and context.json agreeing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest

from tasks.aws import clients as aws
from tasks.local.server import EmbeddedAws, seed
from tests.conftest import MAKE, make, make_environ, settings_for
from tests.fault_lambda import FaultLambda

RAW_ESCAPES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what a terminal or an XML parser must never get raw
HOSTILE = "\x1b[2J\x1b]0;owned\x07 clear \x9b31m csi \x00 nul \x1b[31mred\x1b[0m"


def newest_run(clone: Path, contexts: Path | None = None) -> tuple[dict, dict, Path]:
    """The newest context's context.json (in contexts, default the clone's), its newest run's run.json, and that
    run's folder."""
    contexts = contexts or clone / "contexts"
    folder = max((p for p in contexts.iterdir() if p.name.startswith("lai_")), key=os.path.getmtime)
    context = json.loads((folder / "context.json").read_text())
    run_folder = max((folder / "runs").iterdir(), key=os.path.getmtime)
    return context, json.loads((run_folder / "run.json").read_text()), run_folder


def strict_json(path: Path) -> object:
    """path's JSON as a strict parser reads it (NaN and Infinity refused)."""

    def refuse(constant: str) -> object:
        raise AssertionError(f"{path} holds {constant}: not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def handler(folder: Path, body: str) -> str:
    """A handler module in folder with body as lambda_handler's; its LOCAL_HANDLER_* value."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hostile.py").write_text("def lambda_handler(event, context):\n" + body)
    return f"{folder}:hostile.lambda_handler"


def no_traceback(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    return output


def task_code(result: subprocess.CompletedProcess[str]) -> int:
    """The task's exit code, from its last `exit N: meaning` line (make itself exits 2 when a recipe fails)."""
    if result.returncode == 0:
        return 0
    found = re.findall(r"^exit (\d+): ", result.stderr, re.MULTILINE)
    assert found and result.returncode == 2, result.stderr
    return int(found[-1])


# Items 7 and 8: escapes from a Lambda are shown as escapes on the terminal, in report.md, workflow.log, `make
# report`; junit.xml, report.html and run.json stay well-formed.


def test_a_lambda_error_full_of_escapes_reaches_no_terminal_or_file_raw(clone: Path, tmp_path: Path) -> None:
    code = f"    print({HOSTILE!r})\n    raise RuntimeError({HOSTILE!r})\n"
    result = make(clone, "local-e2e", LOCAL_HANDLER_NORMALIZE_SCORE=handler(tmp_path / "h", code))
    output = no_traceback(result)
    assert task_code(result) == 1 and "\\x1b[2J\\x1b]0;owned\\x07 clear \\u009b31m csi \\x00 nul" in output
    assert not RAW_ESCAPES.search(output.replace("\n", "").replace("\t", ""))
    context, run, folder = newest_run(clone)
    strict_json(folder / "run.json")
    assert run["steps"][1]["error"].endswith(HOSTILE)  # the record keeps what was said; what shows it escapes it
    ET.parse(folder / "junit.xml")  # well-formed XML 1.0
    HTMLParser().feed((folder / "report.html").read_text(encoding="utf-8"))
    report = make(clone, "report", f"CLIENT_ID={context['client_id']}")
    for text in [*(p.read_text(encoding="utf-8") for p in folder.iterdir() if p.is_file()), report.stdout]:
        assert not RAW_ESCAPES.search(text.replace("\n", "").replace("\t", "")), text[:200]
    assert "\\x1b[31mred\\x1b[0m" in (folder / "workflow.log").read_text() and report.returncode == 0


def test_what_a_person_typed_is_echoed_and_refused_with_its_escapes_shown(clone: Path) -> None:
    result = make(clone, "new-context", "TEMPLATE=lai\x1b]0;owned\x07weekly")
    output = no_traceback(result)
    assert task_code(result) == 2 and not RAW_ESCAPES.search(output.replace("\n", ""))
    assert "nox > python -m tasks context new '--template=lai\\x1b]0;owned\\x07weekly'" in result.stderr
    assert "error: unknown template 'lai\\x1b]0;owned\\x07weekly'" in result.stderr


def test_an_answer_holding_1e999_and_nan_is_written_as_strings_with_a_note(clone: Path, tmp_path: Path) -> None:
    code = (
        "    return {'statusCode': 200, 'body': {'status': 'success', 'items_final': 1e999, 'score': float('nan')}}\n"
    )
    result = make(clone, "local-e2e", LOCAL_HANDLER_INGEST=handler(tmp_path / "h", code))
    no_traceback(result)
    _, run, folder = newest_run(clone)
    document = strict_json(folder / "run.json")
    assert isinstance(document, dict) and run["steps"][0]["body"]["items_final"] == "Infinity"
    assert run["steps"][0]["body"]["score"] == "NaN"
    assert any("written as strings: steps[0]" in note for note in run["notes"]), run["notes"]
    assert "written as strings" in (folder / "report.md").read_text()


# Issue 21, point 6: JUnit names are the same in every run of a context; a failure counts once.


def test_junit_names_are_the_same_in_a_passed_and_a_failed_run(clone: Path) -> None:
    assert make(clone, "local-e2e").returncode == 0
    context, _, passed = newest_run(clone)
    failing = make(clone, "local-e2e", f"CLIENT_ID={context['client_id']}", 'PAYLOAD={"simulate": "nothing_selected"}')
    assert task_code(failing) == 1
    _, run, failed = newest_run(clone)
    suites = [ET.parse(folder / "junit.xml").getroot().find("testsuite") for folder in (passed, failed)]
    names = [{(c.get("classname"), c.get("name")) for c in suite.findall("testcase")} for suite in suites]
    assert names[0] == names[1] and len(names[0]) == 22
    shown = " ".join(f"{c} {n} {s.get('name')}" for s in suites for c, n in names[0])
    assert context["client_id"] not in shown and run["run_id"][:8] not in shown and "expected" not in shown
    failures = [c for c in suites[1].findall("testcase") if c.find("failure") is not None]
    assert {c.get("name") for c in failures} == {f"check {c['name']}" for c in run["checks"] if not c["ok"]}
    assert suites[1].get("failures") == str(len(failures))  # the newsletter's answer is not counted again
    properties = {p.get("name"): p.get("value") for p in suites[1].find("properties")}
    assert properties["client_id"] == context["client_id"] and properties["run_id"] == run["run_id"]


# Item 9: every form of every secret, numbers too, from every source; nox's echo line shows no free text.


def test_secrets_are_masked_in_every_form_from_every_source(clone: Path, tmp_path: Path) -> None:
    vendor, function, pin = "vendor-secret-zqxv/1", "function-secret-wkjy", 90817263
    env_vars = tmp_path / "env.json"
    env_vars.write_text(json.dumps({"Parameters": {"PARTNER_API_KEY": function, "PIN_PASSWORD": str(pin)}}))
    code = (
        "    import base64, os, urllib.parse\n"
        f"    vendor, secret = {vendor!r}, os.environ['PARTNER_API_KEY']\n"
        "    print('url', urllib.parse.quote(vendor, safe=''), 'b64', base64.b64encode(b'user:' + vendor.encode()))\n"
        "    print('fn', secret, base64.b64encode(secret.encode()).decode())\n"
        "    pin = int(os.environ['PIN_PASSWORD'])\n"
        "    return {'statusCode': 200, 'body': {'status': 'success', 'items_final': pin}}\n"
    )
    result = make(
        clone,
        "local-e2e",
        f"PURPOSE=a purpose holding {vendor}",
        VENDOR_TOKEN=vendor,
        LOCAL_ENV_VARS=str(env_vars),
        LOCAL_HANDLER_INGEST=handler(tmp_path / "h", code),
    )
    output = no_traceback(result)
    assert "nox > python -m tasks local-e2e --purpose=..." in output
    _, run, folder = newest_run(clone)
    assert run["steps"][0]["body"]["items_final"] == "***"
    forms = [vendor, quote(vendor, safe=""), base64.b64encode(b"user:" + vendor.encode()).decode()[8:20]]
    forms += [function, base64.b64encode(function.encode()).decode()[:20], str(pin)]
    for path in [*(p for p in folder.rglob("*") if p.is_file()), "output"]:
        text = output if path == "output" else Path(path).read_text(encoding="utf-8")
        for form in forms:
            assert form not in text, (path, form)


# Item 10: bad settings and deep documents are one `error:` line with the documented code, never a traceback.


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("FUNCTION_NAME_TEMPLATE", "{nope}", "unknown field {nope}; use {step} and {env}"),
        ("CONFIG_KEY_TEMPLATE", "clients/{client_id", "not a name template"),
        ("DATA_BUCKET_TEMPLATE", "{0}", "unknown field {0}; use {env}"),
        ("LOCAL_LAMBDA_MEMORY", "nan", "expected a whole number from 128 to 10240 MB"),
        ("LOCAL_LAMBDA_CONCURRENCY", "inf", "expected a whole number from 1 to 1000"),
        ("LOCAL_LAMBDA_IDLE_SECONDS", "1e-9", "expected a number from 0.1 to 86400 s"),
        ("LOCAL_LAMBDA_TIMEOUT", "inf", "expected a number from 1 to 900 s"),
    ],
)
def test_a_bad_setting_is_one_error_line_naming_it_and_starts_nothing(
    clone: Path, variable: str, value: str, said: str
) -> None:
    before = sorted(p.name for p in (clone / "contexts").iterdir())
    result = make(clone, "local-e2e", **{variable: value})
    no_traceback(result)
    assert task_code(result) == 2 and f"error: {variable}={value!r}: {said}" in result.stderr, result.stderr
    assert sorted(p.name for p in (clone / "contexts").iterdir()) == before


def test_an_env_vars_file_nested_100000_deep_is_one_error_line(clone: Path, tmp_path: Path) -> None:
    deep = tmp_path / "env.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    result = make(clone, "local-e2e", LOCAL_ENV_VARS=str(deep))
    no_traceback(result)
    assert task_code(result) == 2 and f"error: LOCAL_ENV_VARS: {deep}: not JSON (nested too deeply" in result.stderr


def test_an_answer_nested_30000_deep_fails_its_step_and_the_run_is_recorded(clone: Path) -> None:
    local = settings_for(clone / "contexts")
    with EmbeddedAws(local).running() as endpoint:
        s3 = aws.ClientFactory.local(local.region, endpoint).s3()
        seed(s3, local, "dev")
        config = (clone / "contexts" / "templates" / "lai_weekly.yaml").read_bytes()
        config = config.replace(b"{{CLIENT_ID}}", b"lai_weekly_v900")
        s3.put_object(Bucket="vectora-inbox-config-dev", Key="clients/lai_weekly_v900.yaml", Body=config)
        fault = FaultLambda(s3)
        fault.script("normalize-score", "deep")
        try:
            result = make(
                clone,
                "aws-e2e",
                "ENV=dev",
                "CLIENT_ID=lai_weekly_v900",
                AWS_ENDPOINT_URL_S3=endpoint,
                AWS_ENDPOINT_URL_LAMBDA=fault.url,
                AWS_ENDPOINT_URL_CLOUDWATCH_LOGS=endpoint,
            )
        finally:
            fault.stop()
    no_traceback(result)
    assert task_code(result) == 1 and "nested too deeply (more than 100 levels)" in result.stderr, result.stderr
    context = json.loads((clone / "contexts" / "lai_weekly_v900" / "context.json").read_text())
    assert context["status"] == "failed" and context["runs"][-1]["status"] == "failed"


# Item 7: a full disk at any point of a run leaves run.json and context.json telling the same story.


def make_on_a_small_disk(
    clone: Path, disk: Path, size_kib: int, *args: str, **variables: str
) -> subprocess.CompletedProcess[str]:
    """`make ARGS` with CONTEXTS_DIR on a tmpfs of size_kib mounted at disk (holding the templates), in a user and
    mount namespace of its own: a real file system that fills up, no root needed. The tmpfs goes with the namespace,
    so what it held is copied back to disk afterwards."""
    shutil.copytree(clone / "contexts" / "templates", disk / "templates")
    script = (
        'disk=$1 size=$2; shift 2; kept=$(mktemp -d) && cp -a "$disk"/. "$kept"/ && '
        'mount -t tmpfs -o size="$size"k tmpfs "$disk" && cp -a "$kept"/. "$disk"/ || exit 99; '
        '"$@"; code=$?; rm -f "$disk"/filler; rm -rf "$kept" && cp -a "$disk" "$kept"; umount "$disk"; '
        'cp -a "$kept"/. "$disk"/; rm -rf "$kept"; exit $code'
    )
    result = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
            str(disk),
            str(size_kib),
            *MAKE,
            *args,
        ],
        cwd=clone,
        capture_output=True,
        text=True,
        env=make_environ(CONTEXTS_DIR=str(disk), **variables),
        timeout=300,
    )
    assert result.returncode != 99, result.stderr
    return result


FILLER = """import os, sys
sys.path.insert(0, os.environ["NEWSLETTER_SOURCE"])
from handler import lambda_handler as newsletter


def lambda_handler(event, context):
    answer = newsletter(event, context)
    room = os.statvfs(os.environ["FILL"])
    try:
        with open(os.path.join(os.environ["FILL"], "filler"), "wb") as handle:
            handle.write(bytes(max(room.f_bavail * room.f_frsize - int(os.environ["LEAVE"]), 0)))
    except OSError:
        pass  # the disk is full: what it was for
    return answer
"""


@pytest.mark.parametrize(("leave", "status"), [(0, "running"), (40 * 1024, "failed")])
def test_a_disk_that_fills_up_mid_run_leaves_both_records_agreeing(
    clone: Path, tmp_path: Path, leave: int, status: str
) -> None:
    """The disk fills up while the last step runs: the outputs, the reports and the records cannot all be written.

    With some room left, run.json and context.json both say failed (exit 3, the disk named); with none, both still
    say what the run's start wrote (`running`: `make contexts` lists it unfinished). Never `passed`, never apart.
    """
    folder = tmp_path / "filler"
    folder.mkdir()
    (folder / "filler.py").write_text(FILLER)
    disk = tmp_path / "contexts"
    variables = {"FILL": str(disk), "LEAVE": str(leave), "NEWSLETTER_SOURCE": str(clone / "lambdas/newsletter")}
    env_vars = tmp_path / "env.json"
    env_vars.write_text(json.dumps({"Parameters": variables}))
    result = make_on_a_small_disk(
        clone,
        disk,
        512,
        "local-e2e",
        LOCAL_ENV_VARS=str(env_vars),
        LOCAL_HANDLER_NEWSLETTER=f"{folder}:filler.lambda_handler",
    )
    no_traceback(result)
    assert task_code(result) == 3 and "No space left on device" in result.stderr, result.stderr
    context, run, run_folder = newest_run(clone, disk)
    assert run["status"] == context["status"] == context["runs"][-1]["status"] == context["local"]["status"] == status
    if status == "failed":
        assert run["exit_code"] == context["runs"][-1]["exit_code"] == 3 and "No space left" in run["error"]
    assert not (run_folder / "outputs").exists()  # no half set of outputs
    assert not list(disk.rglob(".*.tmp"))  # nothing staged left behind
    listed = make(clone, "contexts", CONTEXTS_DIR=str(disk)).stdout
    assert f"{run['run_id']} {'unfinished' if status == 'running' else 'failed'}" in listed
    rerun = make(clone, "local-e2e", f"CLIENT_ID={context['client_id']}", CONTEXTS_DIR=str(disk))
    assert rerun.returncode == 0, rerun.stderr
