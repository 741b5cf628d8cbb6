"""Logging as the original set it up: LOG_LEVEL, and a rotating file when LOG_TO_FILE."""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
from pathlib import Path
from typing import IO

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(message_id)s] %(message)s"
LOG_FILE = "email_service.log"


class _MessageIdDefault(logging.Filter):
    """Gives every record a message_id, '-' when it is not about one message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "message_id"):
            record.message_id = "-"
        return True


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file that several processes may write: `odiseo api` with
    API_WORKERS, and an api and workers started in the same directory.

    Each write holds an exclusive flock on `<file>.lock`, and a process that finds
    the file rotated by another reopens it instead of writing into the renamed one
    (or rotating it a second time, which overwrote the backups of the others).
    """

    def __init__(self, filename: Path, *, max_bytes: int, backup_count: int) -> None:
        super().__init__(filename, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
        self._lock_file: IO[bytes] = open(f"{self.baseFilename}.lock", "ab")  # noqa: SIM115

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX)
            try:
                self._follow_rotation()
                super().emit(record)
                if self.stream is not None:
                    self.stream.flush()
            finally:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        except Exception:
            self.handleError(record)

    def _follow_rotation(self) -> None:
        if self.stream is None:
            return
        try:
            on_disk = os.stat(self.baseFilename)
        except FileNotFoundError:
            on_disk = None
        ours = os.fstat(self.stream.fileno())
        if on_disk is None or (on_disk.st_ino, on_disk.st_dev) != (ours.st_ino, ours.st_dev):
            self.stream.close()
            self.stream = None  # reopened by emit, as with delay

    def close(self) -> None:
        super().close()
        self._lock_file.close()


def setup_logging(*, level: str, to_file: bool, directory: Path) -> None:
    """Configure the root logger once for the process."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if to_file:
        directory.mkdir(parents=True, exist_ok=True)
        handlers.append(
            SharedRotatingFileHandler(
                directory / LOG_FILE, max_bytes=10 * 1024 * 1024, backup_count=5
            )
        )
    formatter = logging.Formatter(FORMAT)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_MessageIdDefault())
        root.addHandler(handler)
    root.setLevel(level)
    # Alembic announces every migration at INFO; keep it, but quiet its context chatter.
    for name in ("alembic.runtime.migration", "alembic.runtime.plugins"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # aiosqlite's DEBUG lines print every SQL parameter: message bodies, webhook secrets.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, root.level))
