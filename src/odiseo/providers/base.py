"""The provider contract: hand over one built message, get a receipt or a classified failure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from odiseo.domain.models import Refusal


@dataclass(frozen=True, kw_only=True)
class Receipt:
    """The provider's word that it took the message, for the attempt log."""

    code: int | None
    response: str
    refused: tuple[Refusal, ...] = ()  # recipients refused at RCPT while others were taken


class Provider(Protocol):
    """Delivers built messages. Implementations raise TransientFailure or PermanentFailure."""

    name: str

    async def deliver(
        self,
        data: bytes,
        *,
        sender: str,
        recipients: Sequence[str],
        message_id: str,
    ) -> Receipt:
        """Deliver one serialized RFC 5322 message (CRLF line ends) to `recipients`."""
        ...

    async def check(self) -> None:
        """Raise DeliveryFailure unless the provider could take mail right now."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
