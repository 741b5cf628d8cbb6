"""py-spy profiles of benchmark processes, summarised as Markdown tables.

py-spy is optional (`pip install py-spy`, into the project venv or any other): a
bench given `--profile SECONDS` records the process under load at 100 Hz in
non-blocking mode and prints where its time went.
"""

from __future__ import annotations

import collections
import contextlib
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from common import RESULTS_DIR, Processes, Report


def find_py_spy(given: str | None = None) -> str | None:
    """py-spy: the path given, else on PATH, else beside this interpreter."""
    for candidate in (given, shutil.which("py-spy"), str(Path(sys.executable).parent / "py-spy")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class PySpy:
    """`py-spy record` of one process into bench/results/<name>.collapsed (git-ignored)."""

    def __init__(
        self, procs: Processes, executable: str, *, pid: int, seconds: int, name: str
    ) -> None:
        self.procs = procs
        self.seconds = seconds
        RESULTS_DIR.mkdir(exist_ok=True)
        self.output = RESULTS_DIR / f"{name}.collapsed"
        self.output.unlink(missing_ok=True)
        self.error = ""
        self.popen = procs.start(
            f"py-spy-{name}",
            [executable, "record", "--pid", str(pid), "--duration", str(seconds),
             "--rate", "100", "--nonblocking", "--format", "raw", "--output", str(self.output)],
        )  # fmt: skip

    def finish(self, wait: float = 2.0) -> None:
        """Give py-spy `wait` s to end its --duration; else SIGINT makes it write what it has."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(wait)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(15)
        tail = self.procs.log_tail(self.popen)
        self.procs.stop(self.popen)
        if not self.output.exists():
            self.error = tail or "py-spy wrote nothing"

    def report(self, report: Report, title: str) -> None:
        report.line(f"### py-spy: {title}")
        report.line()
        if self.error:
            report.line(f"py-spy failed:\n\n```\n{self.error}\n```\n")
            return
        report.line(f"{self.seconds} s at 100 Hz; collapsed stacks in `{self.output.name}`.")
        report.line()
        for heading, rows in summarise_profile(self.output).items():
            report.table(["share of samples", heading], rows)


def summarise_profile(path: Path, top: int = 12) -> dict[str, list[list[object]]]:
    """Tables from py-spy's collapsed stacks: self time, inclusive time, self time by package."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            if not frame.startswith(_PLUMBING) and not frame.endswith(_PLUMBING_FILES):
                inclusive[frame] += count
    if not total:
        return {}

    def table(counter: collections.Counter[str], limit: int = top) -> list[list[object]]:
        return [[f"{100 * n / total:.1f} %", name] for name, n in counter.most_common(limit)]

    return {
        "self time by package (leaf frame)": table(packages, 20),
        "self time (leaf function)": table(own),
        "inclusive time (function anywhere on the stack)": table(inclusive),
    }


def _package(frame: str) -> str:
    """The top-level package (or stdlib module) of a shortened frame."""
    path = frame.rpartition("(")[2].rstrip(")")
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") if head else "?"


# Frames on nearly every stack (the event loop, the command's entry): not worth a row.
_PLUMBING = ("<module> ", "main (odiseo/cli.py)", "cmd_", "serve_api (odiseo/serve.py)")
_PLUMBING_FILES = ("(asyncio/base_events.py)", "(asyncio/runners.py)", "(asyncio/events.py)")


def _frame(frame: str) -> str:
    """`func (path/to/module.py:123)` -> `func (module.py)`, with site-packages paths shortened."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    name, path = match.groups()
    for marker in ("site-packages/", "lib/python3.11/", "src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"
