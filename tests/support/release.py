"""An earlier release of Odiseo, installed from this repository's history into its own venv.

The rolling-upgrade test runs a released `odiseo` beside the current one. The release is
found by its commit, which stays in main's history whatever happens to tags: 1.0.0 is the
commit the README's Performance section measured (`d56d523`; pyproject already said 1.0.0
there). That release had no lock file: its dependencies are this checkout's
requirements.lock (the versions its ">=" ranges accept, checked against their hashes), and
the package itself is built from `git archive` of the commit, without resolving anything.

A clone without that commit (a shallow one) fails the test with the reason; it never skips.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import venv
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
RELEASE_1_0_0 = "d56d523e5bc2f5dfe171b32a0bb8865a40b975d0"
INSTALL_SECONDS = 600


@dataclass(frozen=True)
class Release:
    """An installed release: its commit and its `odiseo` program."""

    commit: str
    odiseo: Path


def _git(*args: str) -> bytes:
    done = subprocess.run(
        ["git", "-C", str(REPOSITORY), *args], capture_output=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} failed in {REPOSITORY} (a shallow clone lacks old "
            f"releases: git fetch --unshallow): {done.stderr.decode(errors='replace')}"
        )
    return done.stdout


def _run(args: list[str], *, what: str) -> None:
    done = subprocess.run(args, capture_output=True, timeout=INSTALL_SECONDS, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        raise AssertionError(f"{what} failed ({done.returncode}):\n{output[-4000:]}")


def install_release(commit: str, into: Path) -> Release:
    """Build the package of `commit` and install it into a new venv under `into`."""
    _git("cat-file", "-e", f"{commit}^{{commit}}")
    source = into / "source"
    source.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(_git("archive", "--format=tar", commit))) as archive:
        archive.extractall(source, filter="data")
    environment = into / "venv"
    # The base interpreter, not this venv's: the release sees nothing of the current code.
    venv.EnvBuilder(with_pip=True).create(environment)
    python = str(environment / "bin" / "python")
    lock = REPOSITORY / "requirements.lock"
    _run(
        [python, "-m", "pip", "install", "--quiet", "--require-hashes", "-r", str(lock)],
        what=f"installing {lock.name} for release {commit[:7]}",
    )
    _run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", str(source)],
        what=f"installing odiseo at {commit[:7]}",
    )
    return Release(commit, environment / "bin" / "odiseo")


def extract(commit: str, path: str, into: Path) -> Path:
    """The files under `path` as they were at `commit` (for a test that runs an earlier
    version of them, such as its migrations), under `into`; returns `into / path`."""
    _git("cat-file", "-e", f"{commit}^{{commit}}")
    archive = _git("archive", "--format=tar", commit, path)
    with tarfile.open(fileobj=io.BytesIO(archive)) as files:
        files.extractall(into, filter="data")
    return into / path
