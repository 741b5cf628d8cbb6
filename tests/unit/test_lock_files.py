"""The lock files cover pyproject.toml: a dependency added or raised there without
`make lock` would otherwise be missing from the installs CI and the image make."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return {canonicalize_name(name): version for name, version in PIN.findall(text)}


def uncovered(requirements: list[str], locked: dict[str, str]) -> list[str]:
    """The requirements the lock does not pin to an allowed version."""
    missing = []
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # not for this platform; the lock is universal, this check is not
        version = locked.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{line} (locked: {version})")
    return missing


@pytest.mark.parametrize(
    ("lock", "groups"),
    [("requirements.lock", ("runtime",)), ("requirements-test.lock", ("runtime", "test"))],
)
def test_every_dependency_is_locked_at_an_allowed_version(
    lock: str, groups: tuple[str, ...]
) -> None:
    requirements = list(PROJECT["dependencies"])
    if "test" in groups:
        requirements += PROJECT["optional-dependencies"]["test"]
    assert uncovered(requirements, pins(lock)) == []


def test_the_runtime_lock_pins_what_the_test_lock_pins() -> None:
    """The image runs the versions the suite ran: one resolution, two files."""
    runtime, test = pins("requirements.lock"), pins("requirements-test.lock")
    assert {name: test.get(name) for name in runtime} == runtime


def test_the_lock_holds_hashes() -> None:
    for lock in ("requirements.lock", "requirements-test.lock"):
        entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text())
        unhashed = [e.split()[0] for e in entries if "==" in e and "--hash=sha256:" not in e]
        assert unhashed == [], lock


def test_the_dockerfile_installs_the_lock_and_nothing_else() -> None:
    """Issue 17 point 10: the install steps are held to the lock: the runtime lock with
    hashes, then odiseo alone with --no-deps, and no other pip install or resolver run.
    (tests/e2e/test_container_image.py builds the image and compares its venv with the
    lock too; this check needs no root, podman or network.)"""
    dockerfile = (ROOT / "Dockerfile").read_text()
    steps = [
        " ".join(line.split())
        for line in dockerfile.replace("\\\n", " ").splitlines()
        if line.startswith("RUN") and "pip" in line
    ]
    installs = [part.strip() for step in steps for part in step.split("&&") if "install" in part]
    assert installs == [
        "RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock",
        "/opt/venv/bin/pip install --no-deps /wheels/odiseo-*.whl",
    ], installs
    assert "COPY requirements.lock ./" in dockerfile
    assert "pip wheel --no-deps" in dockerfile  # building odiseo's wheel resolves nothing
    python = re.search(r"python:(\d+\.\d+)", dockerfile)
    assert python and python[1] == "3.11"  # the version the lock is resolved for


def test_the_client_distribution_needs_httpx_only_and_it_is_locked() -> None:
    client = tomllib.loads((ROOT / "clients/python/pyproject.toml").read_text())["project"]
    assert [Requirement(r).name for r in client["dependencies"]] == ["httpx"]
    assert uncovered(client["dependencies"], pins("requirements.lock")) == []


def test_every_stage_of_the_dockerfile_starts_from_the_one_pinned_base() -> None:
    """Both stages come FROM the PYTHON_IMAGE argument, whose default is an exact
    python:3.11.N-slim-bookworm: the venv copied from the builder finds its interpreter,
    and scripts/container-smoke, which only swaps that argument for a local Debian
    bookworm base (no registry can be reached there), builds this very file."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    default = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert len(default) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", default[0])
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", dockerfile, re.MULTILINE)
    assert stages == [("${PYTHON_IMAGE}", "builder"), ("${PYTHON_IMAGE}", "runtime")]
    assert len(re.findall(r"^FROM ", dockerfile, re.MULTILINE)) == 2
    smoke = (ROOT / "scripts" / "container-smoke").read_text()
    assert "--build-arg=PYTHON_IMAGE={BASE}" in smoke and '"bookworm"' in smoke
