"""Recordings that last, misses that are loud, files that hold no credential, through the embedded AWS on 127.0.0.1.

The "real" services are fake servers on 127.0.0.1 (test_services.fake_upstream): nothing reaches AWS or the web.
"""

from __future__ import annotations

import json
import re
import urllib.error
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tasks.errors import ConfigError
from tasks.local.matching import FILE_NAME, load_matching
from tests.integration.test_services import MODEL, embedded_aws, fake_upstream, invoke, through_proxy

PROMPT = "Score this item for the week of {day}. Ingested {day}T06:00:00Z, run 1765090800, id {uuid}.\n\nCamurus."
ANSWER = {"id": "msg_real", "content": [{"type": "text", "text": '{"score": 7}'}]}


pytestmark = pytest.mark.usefixtures("no_developer_proxy")


def record_bedrock(contexts_dir: Path, recordings: Path, prompt: str) -> None:
    with fake_upstream(json.dumps(ANSWER).encode()) as upstream:
        variables = {"LOCAL_SERVICES": "bedrock=record", "LOCAL_AWS_UPSTREAM": upstream.url}
        with embedded_aws(contexts_dir, LOCAL_RECORDINGS=str(recordings), **variables) as aws:
            assert invoke(aws.endpoint, prompt) == ANSWER


def test_a_prompt_recorded_one_day_replays_the_next(contexts_dir: Path, tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    today = PROMPT.format(day="2026-12-07", uuid="0b6f4a1e-8a4b-4c2f-9d7e-1f2a3b4c5d6e")
    record_bedrock(contexts_dir, recordings, today)
    assert (recordings / FILE_NAME).is_file()  # the rules that identified it, to commit with it
    (saved,) = recordings.glob("bedrock/*/*.json")
    document = json.loads(saved.read_text())
    assert document["schema"] == 1 and document["service"] == "bedrock" and "<date>" in document["request"]["matched"]
    tomorrow = PROMPT.format(day="2026-12-08", uuid="7c1d2e3f-0000-4abc-8def-123456789abc").replace(
        "1765090800", "1765177200"
    )
    with embedded_aws(contexts_dir, LOCAL_SERVICES="bedrock=replay", LOCAL_RECORDINGS=str(recordings)) as aws:
        assert invoke(aws.endpoint, tomorrow) == ANSWER
        assert aws.services.misses() == () and aws.services.hits() == {saved.relative_to(recordings).as_posix(): 1}


def test_a_miss_names_the_request_the_closest_recording_and_what_differed(contexts_dir: Path, tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    record_bedrock(contexts_dir, recordings, "Summarize.\n\nCamurus signs with Lilly.")
    with embedded_aws(contexts_dir, LOCAL_SERVICES="bedrock=replay", LOCAL_RECORDINGS=str(recordings)) as aws:
        with pytest.raises(ClientError) as caught:
            invoke(aws.endpoint, "Summarize.\n\nNanexa expands capacity.")
        (miss,) = aws.services.misses()
    message = caught.value.response["Error"]["Message"]
    assert caught.value.response["Error"]["Code"] == "LocalRecordingNotFound"
    assert f"bedrock: no recording of POST /model/{MODEL.replace(':', '%3A')}/invoke" in message
    assert "closest bedrock/" in message and "Camurus" in message and "Nanexa" in message  # what differed
    pending = json.loads(miss.pending.read_text())
    assert pending["response"]["status"] is None and pending["response"]["body"] is None  # ready to fill in
    pending["response"] |= {"status": 200, "body": {"json": {"content": [{"type": "text", "text": "by hand"}]}}}
    miss.pending.write_text(json.dumps(pending))
    with embedded_aws(contexts_dir, LOCAL_SERVICES="bedrock=replay", LOCAL_RECORDINGS=str(recordings)) as aws:
        assert invoke(aws.endpoint, "Summarize.\n\nNanexa expands capacity.")["content"][0]["text"] == "by hand"


def test_recordings_hold_no_credential_and_still_match(contexts_dir: Path, tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    echoed = b'{"items": [], "your_key": "sk-live-0123456789", "token": "tok-abcdef123456"}'
    with fake_upstream(echoed) as web:
        url = f"{web.url}/search?q=camurus&api_key=sk-live-0123456789"
        with embedded_aws(contexts_dir, LOCAL_SERVICES="http=record", LOCAL_RECORDINGS=str(recordings)) as aws:
            assert through_proxy(aws.endpoint, url) == echoed  # the handler gets the real answer
    assert web.received[0]["path"].endswith("api_key=sk-live-0123456789")  # the real host got the real key
    (saved,) = recordings.glob("http/*/*.json")
    text = saved.read_text()
    assert "sk-live-0123456789" not in text and "tok-abcdef123456" not in text and "REDACTED" in text
    with embedded_aws(contexts_dir, LOCAL_RECORDINGS=str(recordings)) as aws:  # another key, same request
        replayed = through_proxy(aws.endpoint, f"{web.url}/search?q=camurus&api_key=sk-other-99999999")
    assert json.loads(replayed)["your_key"] == "REDACTED"


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda text: text[:-3], "cannot be read as JSON"),
        (
            lambda text: text.replace(
                '"content_type": "application/json"', '"content_type": "text/plain\\r\\nSet-Cookie: x=1"'
            ),
            "is not a media type",
        ),
        (lambda text: text.replace('"status": 200', '"status": "ok"'), "must be an HTTP status"),
    ],
)
def test_a_broken_recording_is_named_not_guessed(
    contexts_dir: Path, tmp_path: Path, damage: object, named: str
) -> None:
    recordings = tmp_path / "recordings"
    record_bedrock(contexts_dir, recordings, "Hello.")
    (saved,) = recordings.glob("bedrock/*/*.json")
    saved.write_text(damage(saved.read_text()))  # type: ignore[operator]
    with embedded_aws(contexts_dir, LOCAL_SERVICES="bedrock=replay", LOCAL_RECORDINGS=str(recordings)) as aws:
        with pytest.raises(ClientError) as caught:
            invoke(aws.endpoint, "Hello.")
        (broken,) = aws.services.problems()
    assert caught.value.response["Error"]["Code"] == "LocalRecordingBroken"
    assert named in broken and str(saved) in broken
    assert "Set-Cookie" not in str(caught.value.response["ResponseMetadata"]["HTTPHeaders"])


def test_a_matching_config_that_does_not_parse_is_named(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("services:\n  bedrock:\n    normalize: [moon_phases]\n")
    with pytest.raises(ConfigError, match=r"matching.yaml: services.bedrock.normalize: unknown 'moon_phases'"):
        load_matching(tmp_path)
    (tmp_path / FILE_NAME).write_text("services:\n  http:\n    ignore_query: [session]\n")
    rules = load_matching(tmp_path).for_service("http")
    assert rules.form("GET", "http://h/x?a=1&session=2", b"") == rules.form("GET", "http://h/x?a=1&session=9", b"")
    assert rules.form("GET", "http://h/x?a=1", b"") != rules.form("GET", "http://h/x?a=2", b"")


def test_a_web_miss_fails_loudly_through_the_proxy(contexts_dir: Path, tmp_path: Path) -> None:
    with embedded_aws(contexts_dir, LOCAL_RECORDINGS=str(tmp_path / "recordings")) as aws:
        with pytest.raises(urllib.error.HTTPError) as caught:
            through_proxy(aws.endpoint, "http://news.invalid/feed.xml?day=2026-12-07")
        (miss,) = aws.services.misses()
    assert caught.value.code == 404 and b"http: no recording of GET http://news.invalid/feed.xml" in caught.value.read()
    assert miss.pending.is_file() and "day=<date>" in miss.matched


RULES = """
rules:
  - name: scoring
    model: "anthropic.claude-3-*"
    prompt_contains: "Score"
    prompt_regex: "Title: (?P<title>[^\\\\n]+)"
    json: {score: 8, summary: "{title}", entities: {companies: ["Camurus"]}}
  - name: editorial
    text: "Editorial: {first_sentence}"
"""


def test_stub_rules_give_a_real_parser_well_formed_json(contexts_dir: Path, tmp_path: Path) -> None:
    rules = tmp_path / "stub-rules.yaml"
    rules.write_text(RULES)
    with embedded_aws(contexts_dir, LOCAL_BEDROCK_STUB_RULES=str(rules)) as aws:
        scored = invoke(aws.endpoint, "Score this item.\nTitle: Camurus signs with Lilly\n\nBody text.")
        written = invoke(aws.endpoint, "Write the week's editorial.\n\nNanexa expands. More later.")
        assert aws.services.stand_ins() == ("bedrock stubbed",)
    assert json.loads(scored["content"][0]["text"]) == {
        "score": 8,
        "summary": "Camurus signs with Lilly",
        "entities": {"companies": ["Camurus"]},
    }
    assert written["content"][0]["text"] == "Editorial: Nanexa expands."


def test_a_prompt_no_rule_matches_is_a_named_problem(contexts_dir: Path, tmp_path: Path) -> None:
    rules = tmp_path / "stub-rules.yaml"
    rules.write_text("rules:\n  - prompt_contains: Score\n    text: ok\n")
    with embedded_aws(contexts_dir, LOCAL_BEDROCK_STUB_RULES=str(rules)) as aws:
        with pytest.raises(ClientError):
            invoke(aws.endpoint, "Something else entirely.")
        (problem,) = aws.services.problems()
    assert f"no rule in {rules} matches model" in problem and "Something else entirely." in problem


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("rules: []\n", "expected `rules:`"),
        ("rules:\n  - text: a\n    json: {}\n", "exactly one answer"),
        ("rules:\n  - text: '{nope}'\n", "placeholder {nope}"),
        ("rules:\n  - texts: a\n", "unknown key 'texts'"),
        ("rules:\n  - prompt_regex: '('\n    text: a\n", "not a regular expression"),
    ],
)
def test_stub_rules_that_cannot_work_are_refused_at_start(
    contexts_dir: Path, tmp_path: Path, text: str, named: str
) -> None:
    rules = tmp_path / "stub-rules.yaml"
    rules.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(named)):
        with embedded_aws(contexts_dir, LOCAL_BEDROCK_STUB_RULES=str(rules)):
            pass


def test_the_builtin_stub_is_denied_for_a_pipeline_that_is_not_the_sample(contexts_dir: Path, tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "handler.py").write_text("def lambda_handler(event, context):\n    return {}\n")
    with embedded_aws(contexts_dir, LOCAL_HANDLER_NORMALIZE_SCORE=f"{own}:handler.lambda_handler") as aws:
        with pytest.raises(ClientError) as caught:
            invoke(aws.endpoint, "Summarize.\n\nCamurus.")
        (problem,) = aws.services.problems()
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "LOCAL_BEDROCK_STUB_RULES" in problem and "LOCAL_SERVICES=bedrock=replay" in problem
