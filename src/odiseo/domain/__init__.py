"""Pure domain: messages, statuses, retry timing, legal transitions. No I/O."""

from __future__ import annotations
