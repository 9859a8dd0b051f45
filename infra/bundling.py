"""Build the migration Lambda's asset on the host with pip: no Docker here, nor in CI.

The asset is the project's ``lambda_db_setup/`` package and ``migrations/`` directory beside the
runtime dependencies of ``requirements-lambda.txt``, installed as Linux/arm64 CPython 3.12 wheels;
with ``lint=True`` also squawk (``requirements-lambda-lint.txt``), whose native binary lands at ``bin/squawk``.
The pip step is the slow one (and the only one needing PyPI), so its result is kept under
``.cdk-bundle-cache/`` keyed by the requirements' content: later synths only copy files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, FileSystem, ILocalBundling
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = "requirements-lambda.txt"
LINT_REQUIREMENTS = "requirements-lambda-lint.txt"
SQUAWK_BINARY = "bin/squawk"  # where pip puts squawk-cli's binary (a wheel script), relative to the asset root
CODE_DIRS = ("lambda_db_setup", "migrations")
CACHE_DIR = PROJECT_ROOT / ".cdk-bundle-cache"

# The Lambda python3.12 runtime runs Amazon Linux 2023 (glibc 2.34) on Graviton. pip matches
# platform tags exactly, so name both: psycopg2-binary 2.9.13 ships its arm64 wheel as
# manylinux_2_28, older wheels use manylinux2014 (pure-Python wheels match either way).
PIP_TARGET_ARGS = (
    "--platform",
    "manylinux_2_28_aarch64",
    "--platform",
    "manylinux2014_aarch64",
    "--implementation",
    "cp",
    "--python-version",
    "3.12",
    "--only-binary=:all:",
)

# Only these paths feed the asset's source hash: exactly what try_bundle copies, so the hash
# changes when (and only when) the deployed code, migrations or pinned dependencies change
# (with lint, LINT_REQUIREMENTS too: lambda_asset adds it).
SOURCE_ALLOW_LIST = [
    "*",
    f"!{REQUIREMENTS}",
    *(pattern for name in CODE_DIRS for pattern in (f"!{name}", f"!{name}/**")),
    "**/__pycache__",
    "**/*.pyc",
]

UNUSED_DOCKER_IMAGE = "public.ecr.aws/sam/build-python3.12"  # BundlingOptions requires one; never pulled


def pip_install(requirements: Path, *pip_args: str, cache_dir: Path = CACHE_DIR) -> Path:
    """``pip install --target`` of ``requirements`` plus ``pip_args``, done once per content of both.

    The result is kept in ``cache_dir`` under a key of the requirements file and the arguments;
    a half-done install never takes that name, so an interrupted run is simply redone.
    """
    key = hashlib.sha256(requirements.read_bytes() + "\0".join(pip_args).encode()).hexdigest()[:16]
    target = cache_dir / key
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=cache_dir))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(staging)]
    result = subprocess.run([*command, *pip_args, "-r", str(requirements)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"pip could not install {requirements.name}:\n{result.stderr}")
    try:
        os.rename(staging, target)
    except OSError:  # a concurrent synth finished first; its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
    return target


def migrations_fingerprint(project_root: Path = PROJECT_ROOT) -> str:
    """A hash of the migration files alone, to show in the custom resource which of them changed."""
    return FileSystem.fingerprint(str(project_root / "migrations"), exclude=["**/__pycache__", "**/*.pyc"])


def _ignore_bytecode(directory: str, names: list[str]) -> set[str]:
    return {name for name in names if name == "__pycache__" or name.endswith(".pyc")}


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """CDK's local-bundling hook: the pip-installed dependencies, then the code beside them."""

    def __init__(self, project_root: Path = PROJECT_ROOT, *, lint: bool = False) -> None:
        self.project_root = project_root
        self.lint = lint

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        """Fill ``output_dir`` with the asset; returns True so CDK never falls back to Docker."""
        dependencies = pip_install(self.project_root / REQUIREMENTS, *PIP_TARGET_ARGS)
        shutil.copytree(dependencies, output_dir, dirs_exist_ok=True)
        shutil.rmtree(Path(output_dir) / "bin", ignore_errors=True)  # console scripts: nothing runs them in Lambda
        if self.lint:  # squawk's binary is one of those scripts: bin/squawk, kept executable
            squawk = pip_install(self.project_root / LINT_REQUIREMENTS, *PIP_TARGET_ARGS)
            shutil.copytree(squawk, output_dir, dirs_exist_ok=True)
        for name in CODE_DIRS:
            shutil.copytree(self.project_root / name, Path(output_dir) / name, ignore=_ignore_bytecode)
        return True


def lambda_asset(
    scope: Construct, construct_id: str, project_root: Path = PROJECT_ROOT, *, lint: bool = False
) -> s3_assets.Asset:
    """The migration Lambda's code, hashed from its sources and bundled locally; with ``lint``, squawk too.

    An S3 asset rather than ``Code.from_asset`` so the stack can read its hash (``asset_hash``).
    """
    return s3_assets.Asset(
        scope,
        construct_id,
        path=str(project_root),
        asset_hash_type=AssetHashType.SOURCE,
        exclude=[*SOURCE_ALLOW_LIST, f"!{LINT_REQUIREMENTS}"] if lint else SOURCE_ALLOW_LIST,
        bundling=BundlingOptions(
            image=DockerImage.from_registry(UNUSED_DOCKER_IMAGE),
            local=LocalPipBundling(project_root, lint=lint),
        ),
    )
