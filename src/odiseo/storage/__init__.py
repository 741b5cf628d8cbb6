"""The queue store: one contract (EmailStore), two engines (PostgreSQL, SQLite)."""

from __future__ import annotations

from odiseo.storage.store import EmailStore, Enqueued

__all__ = ["EmailStore", "Enqueued"]
