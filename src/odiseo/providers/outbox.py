"""The outbox provider: each delivered message becomes `<message_id>.eml` in a folder.

For laptops and first runs: real RFC 5322 files that any mail client opens,
written atomically (temp file, fsync, rename) so a reader never sees half a message.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from odiseo.errors import TransientFailure
from odiseo.providers.base import Receipt


class OutboxProvider:
    """Writes messages into `directory` instead of sending them."""

    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def deliver(
        self,
        data: bytes,
        *,
        sender: str,
        recipients: Sequence[str],
        message_id: str,
    ) -> Receipt:
        target = self.directory / f"{message_id}.eml"
        try:
            await asyncio.to_thread(_write_atomically, target, data)
        except OSError as exc:
            raise TransientFailure(f"outbox: cannot write {target.name}: {exc.strerror}") from exc
        return Receipt(code=None, response=f"written to {target}")

    async def check(self) -> None:
        try:
            await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
            writable = os.access(self.directory, os.W_OK)
        except OSError as exc:
            raise TransientFailure(f"outbox: {exc.strerror}") from exc
        if not writable:
            raise TransientFailure(f"outbox: {self.directory} is not writable")

    async def close(self) -> None:
        return None


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".eml")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
