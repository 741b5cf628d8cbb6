"""Run `odiseo` exactly as users do: real processes, a clean environment, output kept in files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.smtp import SmtpServer, free_port

ODISEO = Path(sys.executable).parent / "odiseo"
READY_SECONDS = 60.0  # a loaded machine can take long to start (an api child restarted once)
STOP_SECONDS = 10.0


def poll(
    condition: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = ""
) -> Any:
    """Call `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: last {last!r}")
        time.sleep(interval)


@dataclass
class Process:
    """One running `odiseo` command, its output going to files in the test's tmp_path."""

    name: str
    args: list[str]
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    env: dict[str, str]
    _files: list[Any] = field(default_factory=list)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        """Everything the process said, for assertion messages."""
        code = self.popen.poll()
        return (
            f"\n--- odiseo {' '.join(self.args)} ({self.name}, exit code {code}) ---"
            f"\n[stdout]\n{self.stdout}\n[stderr]\n{self.stderr}"
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.env['API_PORT']}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=kwargs.pop("timeout", 10.0), **kwargs)

    def wait_ready(
        self, *, timeout: float = READY_SECONDS, statuses: frozenset[int] = frozenset({200})
    ) -> httpx.Response:
        """Poll GET /health until it answers with one of `statuses`."""
        deadline = time.monotonic() + timeout
        last: object = None
        with self.client(timeout=5.0) as http:
            while time.monotonic() < deadline:
                if self.popen.poll() is not None:
                    raise AssertionError(f"process exited before it was ready{self.output()}")
                try:
                    response = http.get("/health")
                except httpx.TransportError as exc:
                    last = exc
                else:
                    if response.status_code in statuses:
                        return response
                    last = f"{response.status_code} {response.text}"
                time.sleep(0.1)
        raise AssertionError(f"/health not ready after {timeout} s (last: {last!r}){self.output()}")

    def wait_for_log(self, text: str, *, timeout: float = READY_SECONDS) -> None:
        def seen() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"process exited while waiting for {text!r}{self.output()}")
            return text in self.stderr or text in self.stdout

        try:
            poll(seen, timeout=timeout, what=f"{text!r} in the output")
        except AssertionError as exc:
            raise AssertionError(f"{exc}{self.output()}") from None

    def terminate(self, timeout: float = STOP_SECONDS) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit code (None if it had to be killed)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
                self._close_files()
                return None
        self._close_files()
        return self.popen.returncode

    def _close_files(self) -> None:
        for handle in self._files:
            handle.close()
        self._files.clear()


class Launcher:
    """Starts `odiseo` processes and makes sure every one of them is gone afterwards."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[Process] = []

    def start(
        self,
        args: list[str],
        env: dict[str, str],
        *,
        name: str | None = None,
        program: Path = ODISEO,
    ) -> Process:
        """Start `program` (this checkout's `odiseo` unless told: an older release's)."""
        name = name or f"{len(self.processes)}-{args[0]}"
        stdout_path = self.tmp_path / f"{name}.stdout"
        stderr_path = self.tmp_path / f"{name}.stderr"
        out = stdout_path.open("wb")
        err = stderr_path.open("wb")
        popen = subprocess.Popen(
            [str(program), *args],
            cwd=self.tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        process = Process(name, args, popen, stdout_path, stderr_path, env, [out, err])
        self.processes.append(process)
        return process

    def run(
        self, args: list[str], env: dict[str, str], *, timeout: float = 30.0, program: Path = ODISEO
    ) -> Process:
        """Run a command to completion (killed after `timeout`)."""
        process = self.start(args, env, program=program)
        try:
            process.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            process.terminate(1)
            raise AssertionError(f"did not finish in {timeout} s{process.output()}") from None
        process.terminate()
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            process.terminate()


def base_env(**extra: str) -> dict[str, str]:
    """The minimal environment of every process: PATH, a free API port, quick polling."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "API_PORT": str(free_port()),
        "EMAIL_WORKER_POLL_INTERVAL": "0.5",
        "LOG_TO_FILE": "false",
        **extra,
    }


def smtp_env(server: SmtpServer) -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(server.port),
        "SMTP_USE_TLS": "false",
    }
