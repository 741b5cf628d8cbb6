"""DKIM signatures made in a child process, off the worker's event loop and its GIL.

An RSA-2048 signature is most of what DKIM costs. OpenSSL makes it without the GIL,
but a thread still takes the GIL back twice per signature, and on a busy event loop
those handoffs cost more than the signature they move away. The child gets the
32-byte digests through a pipe and writes the signatures back in the same order;
the event loop only writes a digest and reads a signature. When the child is gone
the caller signs in-process (`SignerGone`), and the next signature starts a new one.
The key reaches the child through the pipe, never through its arguments or
environment.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import os
import signal
import subprocess
import sys
import typing
import weakref

DIGEST_SIZE = 32  # SHA-256
STOP_SECONDS = 5.0


class SignerGone(Exception):
    """The signing process is not there to answer; sign in-process instead."""


class SigningProcess:
    """One child process that signs digests with one key, for one event loop at a time."""

    def __init__(self, *, pem: bytes, signature_size: int) -> None:
        self._pem = pem
        self._size = signature_size
        self._popen: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self._buffer = bytearray()

    def __repr__(self) -> str:
        pid = self._popen.pid if self._popen is not None else None
        return f"SigningProcess(pid={pid})"

    def sign(self, digest: bytes) -> asyncio.Future[bytes]:
        """The future signature of `digest`; raises SignerGone if the child cannot take it."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._popen is None or self._popen.poll() is not None:
            self.stop()  # another event loop (tests) or a dead child: start afresh
            self._start(loop)
        assert self._popen is not None and self._popen.stdin is not None
        future = loop.create_future()
        try:
            os.write(self._popen.stdin.fileno(), digest)
        except OSError:
            self.stop()
            raise SignerGone from None
        self._waiting.append(future)
        return future

    def stop(self) -> None:
        """End the child; signatures still awaited fail with SignerGone."""
        popen, self._popen = self._popen, None
        if popen is not None:
            if self._loop is not None and not self._loop.is_closed():
                assert popen.stdout is not None
                self._loop.remove_reader(popen.stdout.fileno())
            _reap(popen)
        while self._waiting:
            waiting = self._waiting.popleft()
            if not waiting.done() and not waiting.get_loop().is_closed():
                waiting.set_exception(SignerGone())
        self._buffer.clear()
        self._loop = None

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", "odiseo.dkim_process"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError:
            raise SignerGone from None
        assert popen.stdin is not None and popen.stdout is not None
        os.write(popen.stdin.fileno(), b"%d\n" % len(self._pem) + self._pem)
        os.set_blocking(popen.stdout.fileno(), False)
        loop.add_reader(popen.stdout.fileno(), self._readable)
        weakref.finalize(self, _reap, popen)  # a signer dropped unstopped ends its child too
        self._popen, self._loop = popen, loop

    def _readable(self) -> None:
        assert self._popen is not None and self._popen.stdout is not None
        try:
            chunk = os.read(self._popen.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.stop()
            return
        self._buffer += chunk
        while len(self._buffer) >= self._size and self._waiting:
            signature = bytes(self._buffer[: self._size])
            del self._buffer[: self._size]
            waiting = self._waiting.popleft()
            if not waiting.done():  # a cancelled attempt's signature is dropped
                waiting.set_result(signature)


def _reap(popen: subprocess.Popen[bytes]) -> None:
    """Close the child's pipes (it ends at the end of its input) and wait for it."""
    for pipe in (popen.stdin, popen.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    try:
        popen.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


def serve() -> None:
    """The child: read the key, then sign each digest of stdin onto stdout, in order."""
    from odiseo.dkim_signing import load_private_key, make_signature

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops us
    source, sink = typing.cast(io.BufferedReader, sys.stdin.buffer), sys.stdout.fileno()
    key = load_private_key(source.read(int(source.readline())))
    pending = b""
    while chunk := source.read1(65536):  # every digest waiting, in one read
        pending += chunk
        whole = len(pending) - len(pending) % DIGEST_SIZE
        for start in range(0, whole, DIGEST_SIZE):  # each answered at once: no added wait
            _write_all(sink, make_signature(key, pending[start : start + DIGEST_SIZE]))
        pending = pending[whole:]


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


if __name__ == "__main__":
    serve()
