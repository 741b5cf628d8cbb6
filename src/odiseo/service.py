"""Use cases shared by the HTTP API and the command line: enqueue and look up messages."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import uuid_utils

from odiseo.domain.models import (
    Attachment,
    EmailFilter,
    EnqueueSettings,
    NewEmail,
    OutgoingEmail,
    QueuedEmail,
    Status,
)
from odiseo.errors import Duplicate, InvalidEmail, NotFound, OdiseoError, SenderRefused, TooLarge
from odiseo.mime import check_email, is_special_use
from odiseo.mime.incoming import read_submission
from odiseo.render_process import ProcessRenderer, RenderBudget
from odiseo.storage.contract import Gauges, Store
from odiseo.storage.grouping import GroupCommit
from odiseo.unsubscribe import UnsubscribeLinks

log = logging.getLogger(__name__)

DEFAULT_PRIORITY = 5
MAX_SUBJECT_CHARS = 998  # as a request's subject


def new_message_id() -> str:
    """A time-ordered (version 7, RFC 9562) UUID as text: the one place message ids
    are made.

    A claim rewrites every index entry of its row, the unique message_id index's too:
    with random ids each claimed row touched a random leaf of that index, which a long
    history pushes out of the database's cache; ids that grow with time keep the
    entries of recent mail, the mail being claimed, on the index's last few leaves
    (bench/README.md, "Message ids"). uuid-utils' ids also increase within
    a millisecond, in one thread of one process.
    """
    return str(uuid_utils.uuid7())


def _utf8_length(field: str, text: str | None) -> int:
    """The size of a body part; InvalidEmail for what a template made that JSON refuses."""
    if not text:
        return 0
    if "\0" in text:
        raise InvalidEmail(f"{field}: NUL characters are not allowed")
    if text.isascii():
        return len(text)
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        raise InvalidEmail(f"{field}: invalid unicode (lone surrogate)") from None


@dataclass(frozen=True, kw_only=True)
class BatchItem:
    """One email of a batch: the message id it got, or why it was refused."""

    index: int
    message_id: str | None = None
    created: bool = False
    error: str | None = None
    suppressed: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EmailRequest:
    """What a caller asks to send, already validated field by field."""

    to: tuple[str, ...]
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    reply_to: tuple[str, ...] = ()
    from_email: str | None = None
    from_name: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    priority: int = DEFAULT_PRIORITY
    send_at: datetime | None = None
    client_message_id: str | None = None
    template_id: str | None = None
    template_vars: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    expires_at: datetime | None = None
    unsubscribe: bool = False

    def fingerprint(self) -> str:
        """A hash of the payload, to tell a harmless resend from a conflicting reuse of an id."""
        # The fields as dataclasses.asdict gives them, without its deep copies (their
        # cost is in bench/README.md): the hashes already stored must stay comparable,
        # so the JSON text is unchanged.
        payload = {f.name: getattr(self, f.name) for f in _REQUEST_FIELDS}
        if self.unsubscribe:  # a field added later: absent when off, as in stored hashes
            payload["unsubscribe"] = True
        payload["attachments"] = [
            (a.filename, a.content_type, a.content_id, hashlib.sha256(a.data).hexdigest())
            for a in self.attachments
        ]
        canonical = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


_REQUEST_FIELDS = tuple(
    f
    for f in fields(EmailRequest)
    if f.name not in {"client_message_id", "attachments", "unsubscribe"}
)


@dataclass(frozen=True, kw_only=True)
class Submitted:
    """The message id a request ended up with; `created` is False for a resend."""

    message_id: str
    created: bool
    suppressed: tuple[str, ...] = ()  # recipients on the suppression list: skipped


@dataclass(frozen=True, kw_only=True)
class QueueDepth:
    """How many messages are in each status, and how long the oldest due one has waited."""

    counts: dict[Status, int]
    oldest_due_seconds: float


@dataclass(frozen=True, kw_only=True)
class Sender:
    """Defaults for the From header and the senders a request may pick instead."""

    email: str
    name: str | None
    allowed: frozenset[str] = frozenset()
    refuse_special_use: bool = False  # REFUSE_SPECIAL_USE_DOMAINS

    @property
    def message_id_domain(self) -> str:
        """The right-hand side of the Message-IDs this service makes."""
        return self.email.rpartition("@")[2] or "odiseo.local"

    def permits(self, address: str) -> bool:
        address = address.lower()
        domain = "@" + address.rpartition("@")[2]
        return address in self.allowed or domain in self.allowed or address == self.email.lower()


class EmailService:
    """Turns requests into stored messages and answers questions about them."""

    def __init__(
        self,
        *,
        store: Store,
        renderer: ProcessRenderer,
        sender: Sender,
        max_retries: int,
        max_message_bytes: int = 10 * 1024 * 1024,
        unsubscribe: UnsubscribeLinks | None = None,
    ) -> None:
        self.store = store
        # Single enqueues arriving together share a transaction (storage/grouping.py).
        self.writer = GroupCommit(store.enqueue)
        self.unsubscribe = unsubscribe
        self.renderer = renderer
        self.sender = sender
        self.max_retries = max_retries
        self.max_message_bytes = max_message_bytes

    async def prepare(
        self, request: EmailRequest, *, budget: RenderBudget | None = None, scope: str = ""
    ) -> NewEmail:
        """Render and assemble the message to store (its render within `budget`, if given);
        its client_message_id, if any, is looked up within `scope` (the caller's API key).

        Raises:
            InvalidEmail, TemplateError, UnknownTemplate: the request cannot make a message.
            TooLarge: its content exceeds MAX_MESSAGE_BYTES.
        """
        subject, html, text, version = await self._content(request, budget)
        if not subject:
            raise InvalidEmail("subject: required (give one, or a template that has a subject)")
        if html is None and text is None:
            raise InvalidEmail("body: required (give body, text or template_id)")
        if len(subject) > MAX_SUBJECT_CHARS:  # a template can make it longer than a request
            raise InvalidEmail(f"subject: at most {MAX_SUBJECT_CHARS} characters once rendered")
        files = sum(len(a.data) for a in request.attachments)
        size = _utf8_length("body", html) + _utf8_length("text", text) + files
        if size > self.max_message_bytes:
            raise TooLarge(
                f"message content is {size} bytes; the limit is {self.max_message_bytes}"
            )
        from_email = request.from_email or self.sender.email
        if not self.sender.permits(from_email):
            raise InvalidEmail(f"from_email: {from_email} is not an allowed sender")
        message_id = new_message_id()
        email = OutgoingEmail(
            message_id=message_id,
            rfc_message_id=f"<{message_id}@{self.sender.message_id_domain}>",
            from_email=from_email,
            from_name=request.from_name if request.from_name is not None else self.sender.name,
            to=request.to,
            cc=request.cc,
            bcc=request.bcc,
            reply_to=request.reply_to,
            subject=subject,
            html=html,
            text=text,
            headers=request.headers,
            list_unsubscribe=self._unsubscribe_url(request, message_id),
            attachments=request.attachments,
        )
        check_email(email)  # the writer's own checks: what is stored can be sent
        if self.sender.refuse_special_use:
            _refuse_special_use(email)
        return NewEmail(
            email=email,
            priority=request.priority,
            max_retries=self.max_retries,
            send_at=request.send_at,
            client_message_id=request.client_message_id,
            idempotency_scope=scope,
            payload_hash=request.fingerprint() if request.client_message_id else None,
            template_id=request.template_id,
            template_version=version,
            expires_at=request.expires_at,
            tags=request.tags,
            metadata=request.metadata,
        )

    def check_sender(self, address: str, *, field: str) -> None:
        """Raise SenderRefused unless `address` may send (SMTP_FROM_EMAIL, ALLOWED_SENDERS)."""
        if not self.sender.permits(address):
            raise SenderRefused(f"{field}: {address} is not an allowed sender")
        if self.sender.refuse_special_use and is_special_use(address):
            raise SenderRefused(
                f"{field}: {address} is at a special-use or reserved domain name, "
                "which REFUSE_SPECIAL_USE_DOMAINS refuses"
            )

    async def submit_message(
        self, data: bytes, *, recipients: Sequence[str], scope: str, now: datetime
    ) -> Submitted:
        """Store a message an application submitted over SMTP, to be sent as it is.

        Args:
            data: the message as received (dot-unstuffed DATA).
            recipients: the envelope's, already checked; those absent from its To and
                Cc are Bcc: sent to, never shown.
            scope: the submitting API key's idempotency scope.

        Raises:
            InvalidEmail: it breaks the wire rules or does not parse cleanly.
            SenderRefused: its From is not an allowed sender.
            TooLarge: it is larger than MAX_MESSAGE_BYTES allows (submission_limit).
        """
        if len(data) > self.submission_limit:
            raise TooLarge(f"message is {len(data)} bytes; the limit is {self.submission_limit}")
        message_id = new_message_id()
        domain = self.sender.email.rpartition("@")[2] or "odiseo.local"
        message = read_submission(data, message_id=message_id, domain=domain, date=now)
        self.check_sender(message.from_email, field="From")
        wanted = {r.lower(): r for r in recipients}
        to = tuple(a for a in message.to if a.lower() in wanted)
        cc = tuple(a for a in message.cc if a.lower() in wanted and a not in to)
        shown = {a.lower() for a in (*to, *cc)}
        email = OutgoingEmail(
            message_id=message_id,
            rfc_message_id=message.rfc_message_id,
            from_email=message.from_email,
            from_name=message.from_name,
            to=to,
            cc=cc,
            bcc=tuple(r for key, r in wanted.items() if key not in shown),
            reply_to=message.reply_to,
            subject=message.subject,
            html=None,
            text=None,
            raw=message.data,
        )
        item = NewEmail(
            email=email, priority=DEFAULT_PRIORITY, max_retries=self.max_retries,
            idempotency_scope=scope,
        )  # fmt: skip
        result = await self.writer.enqueue_one(item, now=now)
        log.info(
            "queued from SMTP for %d recipient(s)",
            len(email.recipients),
            extra={"message_id": result.message_id},
        )
        return Submitted(message_id=result.message_id, created=True, suppressed=result.suppressed)

    @property
    def submission_limit(self) -> int:
        """The largest message SMTP submission takes, in bytes as sent: MAX_MESSAGE_BYTES of
        content, grown by a third for base64 (how attachments travel), plus room for the
        header fields."""
        return self.max_message_bytes * 4 // 3 + 64 * 1024

    async def publish_settings(self, *, now: datetime) -> None:
        """Copy the sender and size rules into the database, for the SQL function
        enqueue(): it refuses what this service would refuse for them."""
        settings = EnqueueSettings(
            from_email=self.sender.email,
            from_name=self.sender.name,
            allowed_senders=tuple(sorted(self.sender.allowed)),
            message_id_domain=self.sender.message_id_domain,
            max_message_bytes=self.max_message_bytes,
            max_retries=self.max_retries,
        )
        await self.store.publish_enqueue_settings(settings, now=now)

    def _unsubscribe_url(self, request: EmailRequest, message_id: str) -> str | None:
        """The one-click unsubscribe URL, when the message asks for one."""
        links = self.unsubscribe
        if links is None:
            if request.unsubscribe:
                raise InvalidEmail("unsubscribe: set PUBLIC_URL and UNSUBSCRIBE_SECRET first")
            return None
        if not links.wanted(asked=request.unsubscribe, tags=request.tags):
            return None
        if any(name.lower().startswith("list-unsubscribe") for name, _ in request.headers):
            raise InvalidEmail(
                "headers: a List-Unsubscribe header of your own and Odiseo's unsubscribe "
                "link cannot go together; give one"
            )
        recipients = tuple(dict.fromkeys((*request.to, *request.cc, *request.bcc)))
        return links.url(message_id=message_id, recipients=recipients, now=datetime.now(UTC))

    async def _content(
        self, request: EmailRequest, budget: RenderBudget | None
    ) -> tuple[str | None, str | None, str | None, int | None]:
        """Subject, HTML, text and template version: from the request or its template.

        A stored template wins over a file of the same name in TEMPLATES_DIR.
        """
        if request.template_id is None:
            return request.subject, request.html, request.text, None
        stored = await self.store.templates.get(request.template_id)
        if stored is not None:
            rendered = await self.renderer.render_source(
                stored.id,
                subject=stored.subject,
                html=stored.html,
                text=stored.text,
                variables=request.template_vars,
                budget=budget,
            )
            version: int | None = stored.version
        else:
            rendered = await self.renderer.render(
                request.template_id, request.template_vars, budget=budget
            )
            version = None
        return (
            request.subject if request.subject is not None else rendered.subject,
            rendered.html,
            request.text if request.text is not None else rendered.text,
            version,
        )

    async def submit(self, request: EmailRequest, *, now: datetime, scope: str = "") -> Submitted:
        """Store one email durably; a resend of a client_message_id already known in
        `scope` (the caller's API key) creates nothing.

        Raises:
            Duplicate: the client_message_id is taken by a different email (same_payload False).
        """
        item = await self.prepare(request, scope=scope)
        result = await self.writer.enqueue_one(item, now=now)
        if not result.created and not result.same_payload:
            raise Duplicate(result.message_id, same_payload=False)
        if result.created:
            log.info(
                "queued for %d recipient(s)",
                len(item.email.recipients),
                extra={"message_id": result.message_id},
            )
        return Submitted(
            message_id=result.message_id, created=result.created, suppressed=result.suppressed
        )

    async def submit_batch(
        self, requests: list[EmailRequest | str], *, atomic: bool, now: datetime, scope: str = ""
    ) -> tuple[list[BatchItem], bool]:
        """Store many emails in one transaction; a str in `requests` is that item's error.

        Returns each item's result and whether anything was stored. With `atomic`,
        one bad item stores nothing.
        """
        results: list[BatchItem] = []
        ready: list[tuple[int, NewEmail]] = []
        budget = self.renderer.budget()  # one request, one render deadline
        for index, request in enumerate(requests):
            if isinstance(request, str):
                results.append(BatchItem(index=index, error=request))
                continue
            try:
                ready.append((index, await self.prepare(request, budget=budget, scope=scope)))
            except OdiseoError as exc:
                results.append(BatchItem(index=index, error=exc.message))
        if atomic and results:
            refused = "not stored: another item of this atomic batch is invalid"
            results += [BatchItem(index=index, error=refused) for index, _ in ready]
        if (atomic and results) or not ready:
            return sorted(results, key=lambda r: r.index), False
        stored = await self.store.enqueue([item for _, item in ready], now=now)
        for (index, _), outcome in zip(ready, stored, strict=True):
            if not outcome.created and not outcome.same_payload:
                error = "client_message_id is already used by a different email"
                holder = outcome.message_id or None  # "": held in another scope (c001)
                results.append(BatchItem(index=index, message_id=holder, error=error))
            else:
                results.append(
                    BatchItem(
                        index=index,
                        message_id=outcome.message_id,
                        created=outcome.created,
                        suppressed=outcome.suppressed,
                    )
                )
        log.info(
            "batch: %d stored, %d refused",
            sum(r.created for r in results),
            sum(r.error is not None for r in results),
        )
        return sorted(results, key=lambda r: r.index), True

    async def get(self, message_id: str) -> QueuedEmail:
        """The stored message with its history; raises NotFound."""
        found = await self.store.get(_known_shape(message_id))
        if found is None:
            raise NotFound(f"no message {message_id!r}")
        return found

    async def search(
        self, query: EmailFilter, *, limit: int, before: int | None, scan: int | None = None
    ) -> tuple[list[QueuedEmail], int | None]:
        """A page of messages, newest first, and the cursor of the next page; with `scan`,
        a bounded amount of work per page (see the store's search)."""
        return await self.store.search(query, limit=limit, before=before, scan=scan)

    async def reschedule(self, message_id: str, *, send_at: datetime, now: datetime) -> QueuedEmail:
        """Move a message not yet claimed to a new time; raises NotFound or InvalidTransition."""
        await self.store.reschedule(_known_shape(message_id), send_at=send_at, now=now)
        log.info("rescheduled to %s", send_at.isoformat(), extra={"message_id": message_id})
        return await self.get(message_id)

    async def cancel(self, message_id: str, *, now: datetime) -> QueuedEmail:
        """Cancel a waiting message; raises NotFound or InvalidTransition."""
        await self.store.cancel(_known_shape(message_id), now=now)
        log.info("cancelled", extra={"message_id": message_id, "status": Status.CANCELLED})
        return await self.get(message_id)

    async def retry(self, message_id: str, *, now: datetime) -> QueuedEmail:
        """Queue a failed message again; raises NotFound or InvalidTransition."""
        await self.store.requeue(_known_shape(message_id), now=now)
        log.info("requeued by operator", extra={"message_id": message_id, "status": "pending"})
        return await self.get(message_id)

    async def retry_failed(self, *, now: datetime, created_after: datetime | None = None) -> int:
        """Queue every failed message again (optionally only recent ones)."""
        count = await self.store.requeue_failed(now=now, created_after=created_after)
        log.info("requeued %d failed message(s)", count)
        return count

    async def queue_depth(self, *, now: datetime) -> QueueDepth:
        """The queue by status and the wait of its oldest due message (/queue/status): read
        with /metrics' one statement, a round trip on one connection."""
        gauges = await self.store.gauges(now=now)
        return QueueDepth(counts=gauges.counts, oldest_due_seconds=gauges.oldest_due_seconds)

    async def gauges(self, *, now: datetime) -> Gauges:
        """The queue, the webhook backlog and the throttled scopes as /metrics shows them,
        read in one statement."""
        return await self.store.gauges(now=now)

    async def count_request(self, client: str, *, window: int) -> int:
        """Count one request of `client` (an API key's label) in minute `window`, shared by
        every API process; returns the window's count so far, for the rate limit."""
        return await self.store.count_request(client, window=window)

    async def rate_limited(self, client: str, *, limit: int, now: float) -> int | None:
        """Count one request (or submitted message) of `client`, an API key's label, against
        RATE_LIMIT_PER_MINUTE (`limit`; 0 is off), shared by every process: None while
        within it, else the seconds until the next minute starts. `now` is a Unix time."""
        if limit <= 0:
            return None
        window = math.floor(now / 60)
        hits = await self.count_request(client, window=window)
        if hits <= limit:
            return None
        log.warning("rate limit: %s made %d requests this minute", client, hits)
        return max(1, math.ceil((window + 1) * 60 - now))

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers (the /health probe)."""
        await self.store.ping()


def _refuse_special_use(email: OutgoingEmail) -> None:
    named = {
        "from_email": (email.from_email,),
        "to": email.to,
        "cc": email.cc,
        "bcc": email.bcc,
        "reply_to": email.reply_to,
    }
    for name, addresses in named.items():
        for address in addresses:
            if is_special_use(address):
                raise InvalidEmail(
                    f"{name}: {address} is at a special-use or reserved domain name, "
                    "which REFUSE_SPECIAL_USE_DOMAINS refuses"
                )


def _known_shape(message_id: str) -> str:
    """The id itself when it looks like one of ours; NotFound otherwise (never a DB error)."""
    try:
        return str(uuid.UUID(message_id))
    except ValueError:
        raise NotFound(f"no message {message_id!r}") from None


def encode_cursor(email_id: int) -> str:
    """The opaque `next_cursor` of a search page: the id to continue below."""
    return base64.urlsafe_b64encode(str(email_id).encode()).decode().rstrip("=")


# emails.id is a 64-bit BIGINT: a cursor naming a larger id is not one we gave out, and
# neither engine could even compare with it.
_ID_MAX = 2**63 - 1
_DIGITS = re.compile(r"[1-9][0-9]{0,18}")


def decode_cursor(cursor: str) -> int | None:
    """The id in a cursor, or None when it is not one of ours."""
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None
    if not _DIGITS.fullmatch(value) or int(value) > _ID_MAX:
        return None
    return int(value)
