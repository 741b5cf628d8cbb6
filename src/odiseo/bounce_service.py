"""Use cases of mail coming back: bounces and complaints at the bounce listener, and
hosted relays' reports over HTTP, recorded as events and suppressions.

Whatever cannot be read, or matches no stored message, is kept (size-capped) as an
inbound.unparsed event: never dropped in silence.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from odiseo.domain.verp import ReturnPaths
from odiseo.errors import NotFound, ReportRefused
from odiseo.inbound.read import Unreadable, read_returned
from odiseo.inbound.relays import Item, mailgun, postmark, sendgrid, ses
from odiseo.storage.contract import Store

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

log = logging.getLogger(__name__)

KEEP_BYTES = 64 * 1024  # how much of what came back an inbound.unparsed event keeps


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class RelayChecks:
    """How each hosted relay's reports are authenticated; None: its endpoint is off."""

    ses: ses.SnsVerifier | None = None
    sendgrid_key: ec.EllipticCurvePublicKey | None = None
    postmark_token: bytes | None = None
    mailgun_key: bytes | None = None


class BounceService:
    """Reads what came back and records it through the store's outcomes."""

    def __init__(
        self,
        store: Store,
        *,
        return_paths: ReturnPaths | None,
        relays: RelayChecks | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.outcomes = store.outcomes
        self.return_paths = return_paths
        self.relays = relays or RelayChecks()
        self.clock = clock

    # -- the bounce listener -----------------------------------------------------------

    def accepts(self, address: str) -> bool:
        """Whether the bounce listener takes mail for `address`: a VERP return path of
        ours with a tag that checks."""
        return self.return_paths is not None and self.return_paths.message_id(address) is not None

    async def receive(self, raw: bytes, *, sender: str, recipients: Sequence[str]) -> None:
        """A message that came to the VERP addresses `recipients`: recorded, or kept as
        inbound.unparsed. Raises StoreUnavailable (the listener answers 451)."""
        assert self.return_paths is not None
        ids = [self.return_paths.message_id(r) for r in recipients]
        message_id = next((i for i in ids if i is not None), None)
        envelope = {"mail_from": sender, "rcpt_to": list(recipients)}
        try:
            returned = read_returned(raw, message_id=message_id)
        except Unreadable as exc:
            await self._keep(raw, reason=str(exc), source="smtp", message_id=message_id, **envelope)
            return
        if await self.outcomes.record_returned(returned, now=self.clock()) is None:
            reason = "no stored message matches (deleted?)"
            await self._keep(raw, reason=reason, source="smtp", message_id=message_id, **envelope)
            return
        kinds = ", ".join(n.kind.value for n in returned.notices)
        log.info("mail came back: %s", kinds, extra={"message_id": message_id})

    # -- hosted relays -----------------------------------------------------------------

    def ses_topic(self, topic_arn: str | None) -> ses.SnsVerifier:
        """Checked before the body is read: SNS names the topic in a header too."""
        verifier = self.relays.ses
        if verifier is None:
            raise NotFound("the SES endpoint is off: set SES_SNS_TOPIC_ARNS")
        if topic_arn not in verifier.topics:
            raise ReportRefused("x-amz-sns-topic-arn: not one of SES_SNS_TOPIC_ARNS")
        return verifier

    async def ses(self, body: bytes, *, topic_arn: str | None) -> int:
        """An SNS message about SES: a subscription confirmed, or its notices recorded;
        how many were recorded."""
        verifier = self.ses_topic(topic_arn)
        message = await verifier.verify(body)
        if message["TopicArn"] != topic_arn:
            raise ReportRefused("TopicArn: not the topic of x-amz-sns-topic-arn")
        if message["Type"] == "SubscriptionConfirmation":
            await verifier.fetch(ses.sns_url(message.get("SubscribeURL"), "SubscribeURL"))
            log.info("SNS subscription to %s confirmed", message["TopicArn"])
            return 0
        if message["Type"] != "Notification":
            return 0
        return await self._record(ses.read_ses(str(message["Message"])), source="ses")

    def sendgrid_key(self) -> ec.EllipticCurvePublicKey:
        if self.relays.sendgrid_key is None:
            raise NotFound("the SendGrid endpoint is off: set SENDGRID_WEBHOOK_PUBLIC_KEY")
        return self.relays.sendgrid_key

    async def sendgrid(self, body: bytes, *, signature: str, timestamp: str) -> int:
        sendgrid.verify(self.sendgrid_key(), body=body, signature=signature, timestamp=timestamp)
        return await self._record(sendgrid.read_sendgrid(body), source="sendgrid")

    def postmark_authorised(self, authorization: str | None) -> None:
        """Checked before the body is read; ReportRefused or NotFound."""
        if self.relays.postmark_token is None:
            raise NotFound("the Postmark endpoint is off: set POSTMARK_WEBHOOK_TOKEN")
        postmark.check_basic_auth(authorization, self.relays.postmark_token)

    async def postmark(self, body: bytes) -> int:
        return await self._record(postmark.read_postmark(body), source="postmark")

    def mailgun_on(self) -> None:
        if self.relays.mailgun_key is None:
            raise NotFound("the Mailgun endpoint is off: set MAILGUN_WEBHOOK_SIGNING_KEY")

    async def mailgun(self, body: bytes) -> int:
        self.mailgun_on()
        assert self.relays.mailgun_key is not None
        event = mailgun.verify(self.relays.mailgun_key, body)
        return await self._record(mailgun.read_mailgun(event), source="mailgun")

    async def _record(self, items: Sequence[Item], *, source: str) -> int:
        """Each item recorded against its message, or kept if it matches none."""
        recorded = 0
        for item in items:
            if await self.outcomes.record_returned(item.returned, now=self.clock()):
                recorded += 1
                continue
            raw = json.dumps(item.raw, ensure_ascii=False).encode()
            await self._keep(raw, reason="no stored message matches", source=source)
        if items:
            log.info("%s reported %d notice(s), %d matched", source, len(items), recorded)
        return recorded

    async def _keep(
        self, raw: bytes, *, reason: str, source: str, message_id: str | None = None, **more: Any
    ) -> None:
        data = {
            "reason": reason,
            "source": source,
            "size": len(raw),
            "truncated": len(raw) > KEEP_BYTES,
            "raw": raw[:KEEP_BYTES].decode("utf-8", "replace"),
            **more,
        }
        await self.outcomes.keep_unparsed(data=data, message_id=message_id, now=self.clock())
        log.warning("kept unreadable inbound mail (%s): %s", source, reason)
