"""Settings: precedence, env names, .env errors, profile rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import ConfigError, UsageError
from tasks.settings import DEFAULT_PROFILE, load_settings, validate_env
from tests.conftest import REPO


def test_defaults_apply_without_dotenv_or_environment(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    assert settings.env == "dev"
    assert settings.region == "eu-west-3"
    assert settings.function_name("normalize-score") == "vectora-inbox-normalize-score-v2-dev"
    assert settings.config_bucket() == "vectora-inbox-config-dev"
    assert settings.config_key("lai_weekly_v3") == "clients/lai_weekly_v3.yaml"


def test_precedence_is_defaults_then_dotenv_then_environment_then_flags(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("VECTORA_ENV=stage\nAWS_REGION=eu-west-1\nLAMBDA_READ_TIMEOUT=300\n")
    from_dotenv = load_settings(tmp_path, environ={})
    assert (from_dotenv.env, from_dotenv.region, from_dotenv.lambda_read_timeout) == ("stage", "eu-west-1", 300)
    from_environ = load_settings(tmp_path, environ={"AWS_REGION": "us-east-1"})
    assert (from_environ.env, from_environ.region) == ("stage", "us-east-1")
    from_flags = load_settings(tmp_path, {"VECTORA_ENV": "prod", "AWS_REGION": None}, environ={"AWS_REGION": "x-1"})
    assert (from_flags.env, from_flags.region) == ("prod", "x-1")


def test_a_dotenv_line_that_does_not_parse_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AWS_REGION=eu-west-1\nthis is not an assignment\n")
    with pytest.raises(ConfigError, match=r"\.env:2: this line is not KEY=value"):
        load_settings(tmp_path, environ={})


@pytest.mark.parametrize("env", ["production", "Dev", "", "local "])
def test_unknown_envs_are_refused_with_the_choices(env: str) -> None:
    with pytest.raises(UsageError, match="use one of local, dev, stage, prod"):
        validate_env(env)


def test_profile_is_flag_then_aws_profile_then_none_with_keys_then_team_default(tmp_path: Path) -> None:
    assert load_settings(tmp_path, {"AWS_PROFILE": "mine"}, environ={"AWS_PROFILE": "x"}).profile == "mine"
    assert load_settings(tmp_path, environ={"AWS_PROFILE": "x"}).profile == "x"
    assert load_settings(tmp_path, environ={"AWS_ACCESS_KEY_ID": "AKIA..."}).profile is None
    assert load_settings(tmp_path, environ={}).profile == DEFAULT_PROFILE
    assert load_settings(tmp_path, {"VECTORA_ENV": "local"}, environ={"AWS_PROFILE": "x"}).profile is None


def test_each_env_may_have_its_own_profile_from_dotenv_or_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AWS_PROFILE=shared\nAWS_PROFILE_PROD=from-dotenv\n")
    environ = {"AWS_PROFILE_STAGE": "stage-profile"}
    by_env = {env: load_settings(tmp_path, {"VECTORA_ENV": env}, environ=environ) for env in ("dev", "stage", "prod")}
    assert {env: s.profile for env, s in by_env.items()} == {
        "dev": "shared",
        "stage": "stage-profile",
        "prod": "from-dotenv",
    }
    assert by_env["prod"].credentials_origin() == "env prod, profile 'from-dotenv' from AWS_PROFILE_PROD"
    assert load_settings(tmp_path, {"VECTORA_ENV": "prod", "AWS_PROFILE": "flag"}, environ=environ).profile == "flag"


def test_keys_in_dotenv_reach_boto3_and_stay_secret(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "AWS_ACCESS_KEY_ID=AKIAFROMDOTENV\nAWS_SECRET_ACCESS_KEY=secret-from-dotenv\n"
        "AWS_ENDPOINT_URL=http://127.0.0.1:4566\nAWS_REGION=eu-west-1\n"
    )
    settings = load_settings(tmp_path, environ={})
    assert settings.profile is None  # keys in .env: no team default profile asked for
    assert settings.credentials == {
        "AWS_ACCESS_KEY_ID": "AKIAFROMDOTENV",
        "AWS_SECRET_ACCESS_KEY": "secret-from-dotenv",
    }
    assert "secret-from-dotenv" in settings.secrets
    from_environ = load_settings(tmp_path, environ={"AWS_SECRET_ACCESS_KEY": "secret-from-environment"})
    assert from_environ.credentials["AWS_SECRET_ACCESS_KEY"] == "secret-from-environment"
    from tasks.aws.clients import ClientFactory

    factory = ClientFactory(settings.region, settings.profile, settings.endpoints, credentials=settings.credentials)
    found = factory.session.get_credentials()
    assert (found.access_key, found.secret_key, found.token) == ("AKIAFROMDOTENV", "secret-from-dotenv", None)
    assert factory.s3().meta.endpoint_url == "http://127.0.0.1:4566" and factory.s3().meta.region_name == "eu-west-1"


def test_a_malformed_handler_setting_says_the_expected_form(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected FOLDER:module\.function"):
        load_settings(tmp_path, environ={"LOCAL_HANDLER_INGEST": "lambdas/ingest"})


def test_dotenv_example_documents_every_variable() -> None:
    from tasks.settings import DEFAULTS

    example = (REPO / ".env.example").read_text()
    assert [name for name in DEFAULTS if f"# {name}=" not in example] == []
