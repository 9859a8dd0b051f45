"""The Lambda's requirements: every package pinned to one version, and nothing the pins pull in left unpinned.

Checked on what the bundling's pip step installs for the Lambda (Linux arm64, CPython 3.12), as at synth.

Then a bundle made from a clean cache holds the same files as one made last month: pip has nothing to choose.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from lambda_db_setup.cdk import bundling

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)")
# What markers see on the Lambda: CPython 3.12 on Amazon Linux, arm64 (bundling.PIP_TARGET_ARGS), no extras.
LAMBDA = {
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "os_name": "posix",
    "extra": "",
}
FILES = (bundling.REQUIREMENTS, bundling.LINT_REQUIREMENTS)


def pins(path: Path) -> dict[str, str]:
    """Canonical name -> version of every requirement line; a line that is not ``name==version`` fails."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.fullmatch(line)
        assert match, f"{path.name}: {line!r} is not name==version"
        found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def bundled(path: Path) -> dict[str, metadata.Distribution]:
    """Canonical name -> distribution of what the bundling's pip step installs from ``path`` (cached, as at synth)."""
    site = bundling.pip_install(path, *bundling.PIP_TARGET_ARGS, cache_dir=PROJECT_ROOT / bundling.DEFAULT_CACHE_DIR)
    return {canonicalize_name(dist.metadata["Name"]): dist for dist in metadata.distributions(path=[str(site)])}


def unpinned_dependencies(pinned: dict[str, str], installed: dict[str, metadata.Distribution]) -> list[str]:
    """The dependencies (as the Lambda's markers select them) of the pinned packages that the pins miss or refuse.

    Read from the metadata of the pinned versions as pip installed them for the Lambda (Linux arm64, 3.12).
    """
    problems = []
    for name, version in pinned.items():
        assert installed[name].version == version, f"{name}: pinned {version}, installed {installed[name].version}"
        for text in installed[name].requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(LAMBDA):
                continue
            dependency = canonicalize_name(requirement.name)
            if dependency not in pinned or pinned[dependency] not in requirement.specifier:
                problems.append(f"{name} {version} needs {requirement} (pinned: {pinned.get(dependency)})")
    return problems


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_every_line_pins_one_version(path: Path) -> None:
    assert pins(path)  # and each line is name==version (pins() fails on any other)


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_the_pins_hold_every_dependency_of_the_pinned_packages(path: Path) -> None:
    # each file is installed on its own (its own cache entry), so each must be closed by itself
    assert unpinned_dependencies(pins(path), bundled(path)) == []


def test_a_dependency_left_out_is_found() -> None:
    """The closure check itself: powertools without jmespath is not closed."""
    pinned = pins(bundling.REQUIREMENTS)
    without = {name: version for name, version in pinned.items() if name != "jmespath"}
    problems = unpinned_dependencies(without, bundled(bundling.REQUIREMENTS))
    assert [problem.split(" needs ")[1] for problem in problems] == ["jmespath<2.0.0,>=1.0.1 (pinned: None)"]


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_pip_installs_exactly_the_pins(path: Path) -> None:
    """What the bundling's pip step leaves in the cache: the pinned distributions, each at its pin, nothing else."""
    assert {name: dist.version for name, dist in bundled(path).items()} == pins(path)
