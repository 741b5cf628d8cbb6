"""Where delivered mail goes: a real SMTP server, or a local outbox of .eml files."""

from __future__ import annotations

from odiseo.providers.base import Provider, Receipt

__all__ = ["Provider", "Receipt"]
