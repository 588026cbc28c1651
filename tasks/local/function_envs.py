"""Per-function Python environments: what the Lambda Python runtime holds, plus the function's own dependencies.

A Lambda function sees the interpreter's standard library, boto3/botocore, the runtime client (`awslambdaric`), its
own code and its layers; nothing else. Locally each function gets a uv environment with exactly that: the runtime's
packages plus the `requirements.txt` of its source folder (SAM's convention) and of each layer folder. Environments
are cached by the hash of what goes into them, so a warm run builds nothing; a build is atomic (a folder renamed into
place) and locked, so concurrent runs never see half an environment.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path

from tasks.contexts.files import file_lock
from tasks.errors import EnvironmentProblem

RUNTIME_CLIENT = "awslambdaric==4.2.2"
REQUIREMENTS_FILE = "requirements.txt"
UV = Path(sys.executable).with_name("uv")


@functools.cache  # importlib.metadata scans site-packages: once per process, not per cold start
def runtime_packages() -> tuple[str, ...]:
    """What the managed runtime provides: its client, and the boto3/botocore of this toolkit (as pinned by its lock)."""
    return (RUNTIME_CLIENT, f"boto3=={version('boto3')}", f"botocore=={version('botocore')}")


def requirement_files(folders: Iterable[Path]) -> tuple[Path, ...]:
    """The requirements.txt of each folder that has one (the function's source folder, then its layers)."""
    return tuple(folder / REQUIREMENTS_FILE for folder in folders if (folder / REQUIREMENTS_FILE).is_file())


def environment_key(files: Iterable[Path]) -> str:
    """The cache key: the interpreter's version, the runtime's packages and every requirements file's bytes."""
    digest = hashlib.sha256(f"{sys.version_info[:3]}\n".encode())
    digest.update("\n".join(runtime_packages()).encode())
    for path in files:
        digest.update(b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class FunctionEnvironments:
    """Builds and caches function environments under cache_dir; returns each one's Python interpreter."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    def python(self, folders: Iterable[Path]) -> Path:
        """The interpreter of the environment for a function whose code and layers are in folders (built if needed)."""
        files = requirement_files(folders)
        key = environment_key(files)
        target = self.cache_dir / key
        python = target / "bin" / "python"
        if python.exists():
            return python
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.cache_dir / f".{key}.lock"):
            if not python.exists():
                self._build(target, files)
        return python

    def _build(self, target: Path, files: tuple[Path, ...]) -> None:
        staging = target.with_name(f".building-{target.name}-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            self._uv("venv", "--quiet", "--python", sys.executable, str(staging))
            requirements = [arg for path in files for arg in ("-r", str(path))]
            self._uv(
                "pip",
                "install",
                "--quiet",
                "--compile-bytecode",
                "--python",
                str(staging / "bin" / "python"),
                *runtime_packages(),
                *requirements,
                what=", ".join(str(p) for p in files) or "the runtime's packages",
            )
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _uv(self, *args: str, what: str = "") -> None:
        if not UV.exists():
            raise EnvironmentProblem(f"uv is missing from {UV.parent}: run `make venv` to rebuild the environment")
        result = subprocess.run([str(UV), *args], capture_output=True, text=True, check=False)
        if result.returncode:
            detail = " ".join(result.stderr.strip().splitlines()[-3:])
            raise EnvironmentProblem(f"cannot build a function environment from {what or args[0]}: {detail}")
