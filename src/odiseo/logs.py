"""Logging as the original set it up: LOG_LEVEL, and a rotating file when LOG_TO_FILE."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(message_id)s] %(message)s"
LOG_FILE = "email_service.log"


class _MessageIdDefault(logging.Filter):
    """Gives every record a message_id, '-' when it is not about one message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "message_id"):
            record.message_id = "-"
        return True


def setup_logging(*, level: str, to_file: bool, directory: Path) -> None:
    """Configure the root logger once for the process."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if to_file:
        directory.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                directory / LOG_FILE, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
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
    logging.getLogger("alembic.runtime.migration").setLevel(max(logging.WARNING, root.level))
