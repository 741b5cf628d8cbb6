"""Thin route handlers: validate, call the service, map errors to HTTP."""

from __future__ import annotations

from datetime import datetime

from fastapi import HTTPException

from odiseo.requests import utc


def aware(moment: datetime | None) -> datetime | None:
    """A query's time in UTC (no zone means UTC); 422 when UTC cannot hold it."""
    if moment is None:
        return None
    try:
        return utc(moment)
    except ValueError as exc:
        raise HTTPException(422, f"time {exc}") from None
