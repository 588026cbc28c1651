"""Settings: precedence, env names, .env errors, profile rules."""

from __future__ import annotations

import json
import re
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


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("FUNCTION_NAME_TEMPLATE", "{nope}", "unknown field {nope}"),
        ("FUNCTION_NAME_TEMPLATE", "fn-{env}", "lacks {step}"),
        ("CONFIG_KEY_TEMPLATE", "clients/{client_id", "not a name template"),
        ("CONFIG_KEY_TEMPLATE", "clients/x.yaml", "lacks {client_id}"),
        ("DATA_BUCKET_TEMPLATE", "{0}", "unknown field {0}"),
        ("DATA_BUCKET_TEMPLATE", "data-{}", "unknown field {}"),
        ("NEWSLETTERS_BUCKET_TEMPLATE", "n-{env!r}", "unknown field {env!r}"),
        ("CONFIG_BUCKET_TEMPLATE", "c-{env.__class__}", "unknown field {env.__class__}"),
    ],
)
def test_a_malformed_name_template_is_refused_naming_it(tmp_path: Path, variable: str, value: str, said: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}=") as refused:
        load_settings(tmp_path, environ={variable: value})
    assert said in str(refused.value)


def test_name_templates_with_literal_braces_and_without_env_are_accepted(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={"FUNCTION_NAME_TEMPLATE": "{{x}}-{step}", "DATA_BUCKET_TEMPLATE": "d"})
    assert settings.function_name("ingest") == "{x}-ingest" and settings.data_bucket() == "d"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOCAL_LAMBDA_MEMORY", "nan"),
        ("LOCAL_LAMBDA_MEMORY", "64"),
        ("LOCAL_LAMBDA_MEMORY", "512.5"),
        ("LOCAL_LAMBDA_CONCURRENCY", "inf"),
        ("LOCAL_LAMBDA_CONCURRENCY", "0"),
        ("LOCAL_LAMBDA_IDLE_SECONDS", "1e-9"),
        ("LOCAL_LAMBDA_TIMEOUT", "inf"),
        ("LOCAL_LAMBDA_TIMEOUT", "901"),
        ("LAMBDA_READ_TIMEOUT", "-1"),
        ("E2E_TIMEOUT", "1e999"),
        ("PROGRESS_INTERVAL", "0"),
        ("LOCAL_EVENT_RETRY_DELAY", "soon"),
    ],
)
def test_a_numeric_setting_outside_its_range_is_refused_with_the_range(
    tmp_path: Path, variable: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{variable}='{re.escape(value)}': expected a (whole )?number from \S+ to"):
        load_settings(tmp_path, environ={variable: value})


def test_numeric_settings_at_their_bounds_are_accepted(tmp_path: Path) -> None:
    settings = load_settings(
        tmp_path,
        environ={"LOCAL_LAMBDA_MEMORY": "128", "LOCAL_LAMBDA_CONCURRENCY": "1e3", "LOCAL_LAMBDA_IDLE_SECONDS": "0.1"},
    )
    assert (settings.local_lambda_memory_mb, settings.local_lambda_concurrency) == (128, 1000)
    assert settings.local_lambda_idle_seconds == 0.1


def test_secret_named_variables_of_the_functions_env_vars_file_are_secrets(tmp_path: Path) -> None:
    env_vars = tmp_path / "env.json"
    env_vars.write_text(
        json.dumps(
            {
                "Parameters": {"PARTNER_API_KEY": "partner-key-123", "LOG_LEVEL": "DEBUGGING"},
                "ingest": {"PIN_PASSWORD": 12345678},
            }
        )
    )
    secrets = load_settings(tmp_path, environ={"LOCAL_ENV_VARS": str(env_vars)}).secrets
    assert "partner-key-123" in secrets and "12345678" in secrets and "DEBUGGING" not in secrets


def test_an_env_vars_file_nested_too_deeply_is_a_config_error(tmp_path: Path) -> None:
    env_vars = tmp_path / "env.json"
    env_vars.write_text("{" + '"a": {' * 50_000 + "}" * 50_001)
    with pytest.raises(ConfigError, match=r"^LOCAL_ENV_VARS: .*env\.json: not JSON \(nested too deeply"):
        load_settings(tmp_path, environ={"LOCAL_ENV_VARS": str(env_vars)})
