"""A local run's set-up, checked before a context is created or a step runs: every mistake found here costs no
client_id and names the setting to fix (exit 2), or the environment that would not build (exit 3)."""

from __future__ import annotations

import ast
import difflib
from pathlib import Path

from tasks.errors import ConfigError, EnvironmentProblem
from tasks.local.function_envs import FunctionEnvironments
from tasks.local.lambda_service import load_env_vars
from tasks.local.matching import load_matching
from tasks.local.stub_rules import load_stub_rules
from tasks.settings import ENVS, STEPS, HandlerSpec, Settings, handler_variable


def _near(missing: Path) -> str:
    """ " (did you mean normalize_score?)" when a sibling folder's name is close to the missing one's."""
    try:
        siblings = [p.name for p in missing.parent.iterdir() if p.is_dir()]
    except OSError:
        return ""
    close = difflib.get_close_matches(missing.name, siblings, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _defines(module_file: Path, name: str) -> bool | None:
    """Whether the module defines name at top level; None when it does not parse (the run reports that as Lambda
    does: Runtime.UserCodeSyntaxError)."""
    try:
        tree = ast.parse(module_file.read_bytes(), str(module_file))
    except (SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
        if isinstance(node, ast.ImportFrom | ast.Import) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False


def check_handler(variable: str, spec: HandlerSpec) -> None:
    """The folder, the module file and the function a LOCAL_HANDLER_* setting names all exist."""
    if not spec.source_dir.is_dir():
        raise ConfigError(f"{variable}: the handler folder {spec.source_dir} does not exist{_near(spec.source_dir)}")
    base = spec.source_dir / Path(*spec.module.split("."))
    module_file = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
    if not module_file.is_file():
        raise ConfigError(f"{variable}: no module {spec.module!r} in {spec.source_dir} (looked for {base.name}.py)")
    if _defines(module_file, spec.function) is False:
        raise ConfigError(f"{variable}: {module_file} defines no {spec.function!r} (the handler is module.function)")


def check_env_vars(settings: Settings) -> None:
    """The env-vars file parses and every key names a step, a function or Parameters."""
    document = load_env_vars(settings.local_env_vars)
    valid = {"Parameters", *STEPS, *(settings.function_name(step, env) for step in STEPS for env in ENVS)}
    unknown = sorted(set(document) - valid)
    if unknown:
        raise ConfigError(
            f"LOCAL_ENV_VARS: {settings.local_env_vars}: key {unknown[0]!r} names no step or function: use "
            f"Parameters, {', '.join(STEPS)} or a function name such as {settings.function_name(STEPS[0], 'local')}"
        )


def check_local_setup(settings: Settings) -> None:
    """Everything a local run needs, in the order a person fixes it; the function environments are built here."""
    for step in STEPS:
        check_handler(handler_variable(step), settings.local_handlers[step])
    for layer in settings.local_lambda_layers:
        if not layer.is_dir():
            raise ConfigError(f"LOCAL_LAMBDA_LAYERS: the layer folder {layer} does not exist{_near(layer)}")
    check_env_vars(settings)
    load_matching(settings.local_recordings)
    if settings.local_bedrock_stub_rules is not None:
        load_stub_rules(settings.local_bedrock_stub_rules)
    environments = FunctionEnvironments(settings.local_lambda_env_cache)
    for step in STEPS:
        try:
            environments.python(settings.requirement_folders(step))
        except EnvironmentProblem as err:
            hint = (
                ""
                if step in settings.local_skip_requirements
                else (
                    f"; a deployment that ships code plus layers installs no handler requirements: "
                    f"LOCAL_SKIP_REQUIREMENTS={step}"
                )
            )
            raise EnvironmentProblem(f"{step} ({handler_variable(step)}): {err}{hint}") from err
