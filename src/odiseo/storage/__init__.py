"""The queue store: one contract (Store), two engines (PostgreSQL, SQLite)."""

from __future__ import annotations

from odiseo.storage.contract import Enqueued, Store

__all__ = ["Enqueued", "Store"]
