"""The event types Odiseo publishes: one registry for the API, webhooks and the docs.

An event is a row of a message's history that has a `type`; rows without one (a
lease that ran out, an operator's reschedule) stay internal. `README.md`, "Events and
webhooks", prints the table below; a test holds the two together.
"""

from __future__ import annotations

import enum

from odiseo.domain.models import Outcome


class EventType(enum.StrEnum):
    EMAIL_SENT = "email.sent"
    EMAIL_DEFERRED = "email.deferred"
    EMAIL_FAILED = "email.failed"
    EMAIL_BOUNCED = "email.bounced"
    EMAIL_SUPPRESSED = "email.suppressed"
    EMAIL_CANCELLED = "email.cancelled"
    EMAIL_UNSUBSCRIBED = "email.unsubscribed"
    EMAIL_COMPLAINED = "email.complained"
    EMAIL_DELAYED = "email.delayed"
    INBOUND_UNPARSED = "inbound.unparsed"
    WEBHOOK_TEST = "webhook.test"
    WEBHOOK_DISABLED = "webhook.disabled"
    RELAY_THROTTLED = "relay.throttled"
    DOMAIN_THROTTLED = "domain.throttled"


# What each type means, as the README's table says it.
DESCRIPTIONS: dict[EventType, str] = {
    EventType.EMAIL_SENT: "the relay accepted the message (SMTP reply, accepted recipients)",
    EventType.EMAIL_DEFERRED: "a transient failure: tried again at `next_attempt_at`",
    EventType.EMAIL_FAILED: "given up: a permanent failure, retries spent, or expired",
    EventType.EMAIL_BOUNCED: "a recipient refused for good (at RCPT, or later by a bounce)",
    EventType.EMAIL_SUPPRESSED: "a recipient skipped because it is on the suppression list",
    EventType.EMAIL_CANCELLED: "an operator cancelled the message before it was sent",
    EventType.EMAIL_UNSUBSCRIBED: "a recipient used the message's one-click unsubscribe",
    EventType.EMAIL_COMPLAINED: "a recipient reported the message as spam (feedback loop)",
    EventType.EMAIL_DELAYED: "a delay notice arrived: the receiving side is still trying",
    EventType.INBOUND_UNPARSED: "mail or a relay report came back that Odiseo could not read "
    "or match to a message: kept (size-capped) in `data.raw`",
    EventType.WEBHOOK_TEST: "sent on request to check a webhook endpoint",
    EventType.WEBHOOK_DISABLED: "a webhook endpoint was disabled after failing (or 410 Gone)",
    EventType.RELAY_THROTTLED: "the relay asked to slow down",
    EventType.DOMAIN_THROTTLED: "a recipient domain asked to slow down",
}

# Events about one recipient carry it (`data.recipient`); the others name the message's.
PER_RECIPIENT = frozenset(
    {
        EventType.EMAIL_BOUNCED,
        EventType.EMAIL_SUPPRESSED,
        EventType.EMAIL_COMPLAINED,
        EventType.EMAIL_UNSUBSCRIBED,
        EventType.EMAIL_DELAYED,
    }
)

# Events that concern no message at all (inbound.unparsed: when it matched none).
SYSTEM = frozenset(
    {
        EventType.INBOUND_UNPARSED,
        EventType.WEBHOOK_TEST,
        EventType.WEBHOOK_DISABLED,
        EventType.RELAY_THROTTLED,
        EventType.DOMAIN_THROTTLED,
    }
)

# The event an attempt's outcome publishes (per-recipient ones come beside it).
OF_OUTCOME: dict[Outcome, EventType | None] = {
    Outcome.SENT: EventType.EMAIL_SENT,
    Outcome.RETRY: EventType.EMAIL_DEFERRED,
    Outcome.FAILED: EventType.EMAIL_FAILED,
    Outcome.SUPPRESSED: None,  # each skipped recipient has its own email.suppressed
}
