"""Build the migration Lambda's asset on the host with pip: no Docker here, nor in CI.

The asset is the installed ``lambda_db_setup`` package (wherever it lives: a source tree or a wheel's
site-packages; without its ``cdk`` subpackage, which imports aws-cdk-lib) and the app's migrations directory
(as ``migrations/``) beside the runtime dependencies of ``requirements-lambda.txt`` (package data next to this
module), installed as Linux/arm64 CPython 3.12 wheels; with ``lint=True`` also squawk
(``requirements-lambda-lint.txt``), whose native binary lands at ``bin/squawk``; with a team's own CA bundle,
that file as ``ca-bundle.pem`` (the package's own RDS bundle travels inside it, see ``tls``). The pip step is
the slow one (and the only one needing PyPI), so its result is kept in a cache directory (``.cdk-bundle-cache/``
in the working directory by default) keyed by the requirements' content: later synths only copy files.
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

from lambda_db_setup.cdk.tls import TEAM_BUNDLE

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the lambda_db_setup package, installed or not
REQUIREMENTS = Path(__file__).with_name("requirements-lambda.txt")
LINT_REQUIREMENTS = Path(__file__).with_name("requirements-lambda-lint.txt")
SQUAWK_BINARY = "bin/squawk"  # where pip puts squawk-cli's binary (a wheel script), relative to the asset root
MIGRATIONS = "migrations"  # the migrations directory's name in the asset
DEFAULT_CACHE_DIR = Path(".cdk-bundle-cache")  # relative to the working directory: where `cdk synth` runs
BYTECODE = ["**/__pycache__", "**/*.pyc"]

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

UNUSED_DOCKER_IMAGE = "public.ecr.aws/sam/build-python3.12"  # BundlingOptions requires one; never pulled


def pip_install(requirements: Path, *pip_args: str, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
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


def fingerprint(directory: Path) -> str:
    """A hash of the files under ``directory`` (bytecode left out), to tell when they changed."""
    return FileSystem.fingerprint(str(directory), exclude=BYTECODE)


def _ignore_bytecode(directory: str, names: list[str]) -> set[str]:
    return {name for name in names if name == "__pycache__" or name.endswith(".pyc")}


def _ignore_bytecode_and_cdk(directory: str, names: list[str]) -> set[str]:
    """The package without its construct: the Lambda never imports ``lambda_db_setup.cdk`` (nor aws-cdk-lib)."""
    top_level = Path(directory) == PACKAGE_DIR
    return _ignore_bytecode(directory, names) | ({"cdk"} if top_level else set())


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """CDK's local-bundling hook: the pip-installed dependencies, then the code and migrations beside them."""

    def __init__(self, migrations_dir: Path, *, lint: bool, cache_dir: Path, ca_bundle: Path | None = None) -> None:
        self.migrations_dir = migrations_dir
        self.lint = lint
        self.cache_dir = cache_dir
        self.ca_bundle = ca_bundle

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        """Fill ``output_dir`` with the asset; returns True so CDK never falls back to Docker."""
        dependencies = pip_install(REQUIREMENTS, *PIP_TARGET_ARGS, cache_dir=self.cache_dir)
        shutil.copytree(dependencies, output_dir, dirs_exist_ok=True)
        shutil.rmtree(Path(output_dir) / "bin", ignore_errors=True)  # console scripts: nothing runs them in Lambda
        if self.lint:  # squawk's binary is one of those scripts: bin/squawk, kept executable
            squawk = pip_install(LINT_REQUIREMENTS, *PIP_TARGET_ARGS, cache_dir=self.cache_dir)
            shutil.copytree(squawk, output_dir, dirs_exist_ok=True)
        output = Path(output_dir)
        shutil.copytree(PACKAGE_DIR, output / PACKAGE_DIR.name, ignore=_ignore_bytecode_and_cdk)
        shutil.copytree(self.migrations_dir, output / MIGRATIONS, ignore=_ignore_bytecode)
        if self.ca_bundle is not None:
            shutil.copyfile(self.ca_bundle, output / TEAM_BUNDLE)
        return True


def lambda_asset(
    scope: Construct,
    construct_id: str,
    migrations_dir: Path,
    *,
    lint: bool,
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
    ca_bundle: Path | None = None,
) -> s3_assets.Asset:
    """The migration Lambda's code, hashed from what it bundles and bundled locally; with ``lint``, squawk too.

    The hash covers the package (its requirements and CA bundles included), the migrations, the lint switch
    and a team's CA bundle, so it changes when (and only when) the deployed code, migrations, pinned
    dependencies or trusted CAs change. An S3 asset rather than ``Code.from_asset`` so that the construct can
    read the hash (``asset_hash``).
    """
    parts = [fingerprint(PACKAGE_DIR), fingerprint(migrations_dir), f"lint={lint}"]
    if ca_bundle is not None:
        parts.append(f"ca_bundle={hashlib.sha256(ca_bundle.read_bytes()).hexdigest()}")
    return s3_assets.Asset(
        scope,
        construct_id,
        path=str(migrations_dir),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=hashlib.sha256("\0".join(parts).encode()).hexdigest(),
        bundling=BundlingOptions(
            image=DockerImage.from_registry(UNUSED_DOCKER_IMAGE),
            local=LocalPipBundling(migrations_dir, lint=lint, cache_dir=Path(cache_dir), ca_bundle=ca_bundle),
        ),
    )
