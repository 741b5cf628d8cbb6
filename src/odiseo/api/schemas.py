"""Request and response models of the HTTP API."""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import mimetypes
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import to_json

from odiseo.domain.models import Attachment
from odiseo.errors import InvalidEmail
from odiseo.mime import (
    MEDIA_TYPE,
    ascii_address,
    check_header_name,
    value_problem,
)
from odiseo.rendering import TEMPLATE_ID
from odiseo.service import DEFAULT_PRIORITY, MAX_SUBJECT_CHARS, EmailRequest

MAX_RECIPIENTS = 50
MAX_ATTACHMENTS = 50
MAX_BATCH = 500
MAX_TEMPLATE_VARS_BYTES = 65536
MAX_BODY_CHARS = 5_000_000


def _header_text(value: str) -> str:
    """A value bound for a header: the rule the message writer itself applies. Spaces and
    TABs at either end are dropped, as mail readers do when they unfold a header."""
    problem = value_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value.strip(" \t")


HeaderText = Annotated[str, AfterValidator(_header_text)]
MAX_DEPTH = 32


def _check_json(value: Any, path: str) -> None:
    """Refuse what no field should hold: lone surrogates, NUL, NaN/Infinity, deep nesting.

    The walk is iterative and builds no paths; only a refused value is looked for
    again, to name where it is.
    """
    if not _plain_and_sane(value):
        _name_the_problem(value, path, 0)


def _plain_and_sane(value: Any) -> bool:
    """Whether `value` passes _check_json, with every container of plain JSON types.

    Scalars are judged where they are found and only containers are queued: a
    request is mostly flat, so this walk touches each value once.
    """
    pending: list[tuple[Any, int]] = [([value], -1)]
    while pending:
        container, depth = pending.pop()
        if depth >= MAX_DEPTH and container:
            return False
        if type(container) is dict:
            children: Iterable[Any] = itertools.chain(container, container.values())
        else:
            children = container
        for item in children:
            kind = type(item)
            if kind is str:
                if "\0" in item or (not item.isascii() and not _encodable(item)):
                    return False
            elif kind is dict or kind is list:
                pending.append((item, depth + 1))
            elif kind is float:
                if not math.isfinite(item):
                    return False
            elif kind not in _PLAIN_SCALARS and isinstance(item, str | dict | list | float):
                return False  # a subclass: let the careful walk judge it
    return True


_PLAIN_SCALARS = frozenset({int, bool, type(None)})


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name_the_problem(value: Any, path: str, depth: int) -> None:
    """Raise ValueError naming where `value` breaks a _check_json rule."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{path or 'body'}: nested more than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\0" in value:
            raise ValueError(f"{path or 'body'}: NUL characters are not allowed")
        if not _encodable(value):
            raise ValueError(f"{path or 'body'}: invalid unicode (lone surrogate)")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path or 'body'}: NaN and Infinity are not JSON numbers")
    elif isinstance(value, dict):
        for key, item in value.items():
            _name_the_problem(key, path, depth + 1)
            _name_the_problem(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _name_the_problem(item, f"{path}[{index}]", depth + 1)


def utc(value: datetime) -> datetime:
    """The time in UTC (no zone means UTC); ValueError when UTC cannot hold it."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


class RequestModel(BaseModel):
    """A request body: unknown fields refused, every string and number sane."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _sane(cls, data: Any) -> Any:
        _check_json(data, "")
        return data


# The everyday address (ASCII dot-atom @ ASCII host names): a strict subset of what
# email-validator accepts, checked by one regex instead of its full parse, which every
# recipient of every request would pay (bench/README.md has both costs).
_PLAIN_ADDRESS = re.compile(
    r"(?P<local>[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z])?)",
    re.ASCII | re.IGNORECASE,
)


def _address(value: Any, handler: ValidatorFunctionWrapHandler) -> str:
    """A plain address by the fast path; anything else by email-validator, then xn--."""
    if isinstance(value, str) and len(value) <= 254:
        match = _PLAIN_ADDRESS.fullmatch(value)
        if match and len(match["local"]) <= 64 and "--" not in match["domain"]:
            return f"{match['local']}@{match['domain'].lower()}"
    return ascii_address(handler(value))


# Checked as email-validator does (no DNS lookups), then international domains made xn--.
Address = Annotated[EmailStr, WrapValidator(_address)]


class AttachmentIn(RequestModel):
    """A file: base64 `content`; `content_id` makes it inline (`<img src="cid:...">`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "filename": "invoice.pdf",
                    "content": "JVBERi0xLjQK",
                    "content_type": "application/pdf",
                }
            ]
        },
    )

    filename: HeaderText = Field(
        min_length=1, max_length=255, description="spaces at either end are dropped"
    )
    content: str = Field(description="the file, base64-encoded", max_length=MAX_BODY_CHARS * 3)
    content_type: str | None = Field(
        default=None,
        max_length=255,
        description="type/subtype in ASCII (RFC 6838 names); guessed from filename if absent",
    )
    content_id: str | None = Field(default=None, min_length=1, max_length=257)

    @field_validator("content")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("is not valid base64") from None
        return value

    @field_validator("filename")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        trimmed = value.strip()  # mail readers drop them (Python's get_filename() too)
        if not trimmed:
            raise ValueError("must not be blank")
        return trimmed

    # content_type and content_id are judged by the message writer's own rules when the
    # email is prepared (mime.check_email), which name the field.

    @field_validator("content_id")
    @classmethod
    def _bare_id(cls, value: str | None) -> str | None:
        return None if value is None else value.removeprefix("<").removesuffix(">")

    def to_attachment(self) -> Attachment:
        guessed = mimetypes.guess_type(self.filename)[0]
        if guessed is None or not MEDIA_TYPE.fullmatch(guessed):
            guessed = None
        elif guessed.lower().startswith(("multipart/", "message/")):
            guessed = None  # a container type would need its own structure: send it opaque
        return Attachment(
            filename=self.filename,
            content_type=self.content_type or guessed or "application/octet-stream",
            data=base64.b64decode(self.content),
            content_id=self.content_id,
        )


class EmailIn(RequestModel):
    """An email to send. `to` is required; so is a body (`body`, `text` or `template_id`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "to": ["recipient@example.com"],
                    "subject": "Hello from Odiseo",
                    "body": "<h1>Welcome!</h1><p>Your email service is working.</p>",
                }
            ]
        },
    )

    to: list[Address] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    subject: HeaderText | None = Field(default=None, max_length=MAX_SUBJECT_CHARS)
    body: str | None = Field(default=None, max_length=MAX_BODY_CHARS, description="HTML body")
    text: str | None = Field(
        default=None, max_length=MAX_BODY_CHARS, description="plain-text part; derived from body"
    )
    cc: list[Address] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    bcc: list[Address] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    reply_to: Annotated[list[Address], Field(max_length=MAX_RECIPIENTS)] | Address | None = None
    from_email: Address | None = None
    from_name: HeaderText | None = Field(default=None, max_length=255)
    headers: dict[str, HeaderText] = Field(default_factory=dict, max_length=50)
    priority: int = Field(default=DEFAULT_PRIORITY, ge=0, le=9, description="0 is sent first")
    send_at: datetime | None = Field(default=None, description="not before this time (ISO 8601)")
    client_message_id: str | None = Field(default=None, min_length=1, max_length=255)
    template_id: str | None = Field(
        default=None, pattern=TEMPLATE_ID.pattern, description="a stored or file template"
    )
    template_vars: dict[str, Any] = Field(default_factory=dict)
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=20
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    expires_at: datetime | None = Field(
        default=None, description="not sent after this time: it ends failed with reason expired"
    )
    unsubscribe: bool = Field(
        default=False,
        description="add a one-click unsubscribe link (RFC 8058) for the one recipient; "
        "needs PUBLIC_URL and UNSUBSCRIBE_SECRET",
    )

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            try:
                check_header_name(name)
            except InvalidEmail as exc:
                raise ValueError(exc.message.removeprefix("headers: ")) from None
            if len(value) > 998:
                raise ValueError(f"{name}: value longer than 998 characters")
        return headers

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        if len(to_json(metadata)) > 4096:  # NaN and Infinity were refused by _check_json
            raise ValueError("must be at most 4096 bytes as JSON")
        return metadata

    @field_validator("template_vars")
    @classmethod
    def _bounded_vars(cls, variables: dict[str, Any]) -> dict[str, Any]:
        if len(to_json(variables)) > MAX_TEMPLATE_VARS_BYTES:
            raise ValueError(f"must be at most {MAX_TEMPLATE_VARS_BYTES} bytes as JSON")
        return variables

    @field_validator("send_at", "expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc(value)

    def to_request(self) -> EmailRequest:
        reply_to = self.reply_to if isinstance(self.reply_to, list) else [self.reply_to or ""]
        return EmailRequest(
            to=tuple(self.to),
            subject=self.subject,
            html=self.body,
            text=self.text,
            cc=tuple(self.cc),
            bcc=tuple(self.bcc),
            reply_to=tuple(a for a in reply_to if a),
            from_email=self.from_email,
            from_name=self.from_name,
            headers=tuple(self.headers.items()),
            priority=self.priority,
            send_at=self.send_at,
            client_message_id=self.client_message_id,
            template_id=self.template_id,
            template_vars=self.template_vars,
            tags=tuple(self.tags),
            metadata=self.metadata,
            attachments=tuple(a.to_attachment() for a in self.attachments),
            expires_at=self.expires_at,
            unsubscribe=self.unsubscribe,
        )


class Accepted(BaseModel):
    """The answer to POST /emails (keys of the original kept exactly)."""

    status: str = "accepted"
    queued: bool = True
    message_id: str
    detail: str
    timestamp: datetime
    duplicate: bool = False
    suppressed: list[str] = Field(
        default=[], description="recipients on the suppression list: they will be skipped"
    )


class QueueStatus(BaseModel):
    pending: int
    scheduled: int
    processing: int
    sent: int
    failed: int
    cancelled: int
    suppressed: int
    oldest_pending_seconds: float
    timestamp: datetime


class Health(BaseModel):
    status: str
    db: str
    email_provider: str
    version: str
    timestamp: datetime
    detail: str | None = None


class BatchIn(RequestModel):
    """Up to 500 emails stored in one transaction."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "emails": [
                        {"to": ["a@example.com"], "subject": "Hi A", "body": "<p>Hello</p>"},
                        {"to": ["b@example.com"], "subject": "Hi B", "body": "<p>Hello</p>"},
                    ],
                    "atomic": False,
                }
            ]
        },
    )

    emails: list[dict[str, Any]] = Field(
        min_length=1, max_length=MAX_BATCH, description="each item is a POST /emails body"
    )

    @model_validator(mode="before")
    @classmethod
    def _sane(cls, data: Any) -> Any:
        # Each email is checked on its own, so one bad item gets its own result.
        if isinstance(data, dict):
            _check_json({k: v for k, v in data.items() if k != "emails"}, "")
        return data

    atomic: bool = Field(default=False, description="store nothing unless every item is valid")


class BatchItemOut(BaseModel):
    index: int
    status: str = Field(description="accepted, duplicate or error")
    message_id: str | None = None
    detail: str | None = None
    suppressed: list[str] = Field(
        default=[], description="recipients on the suppression list: they will be skipped"
    )


class BatchOut(BaseModel):
    status: str = Field(description="accepted, partial or rejected")
    accepted: int
    rejected: int
    results: list[BatchItemOut]
    timestamp: datetime


class RescheduleIn(RequestModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"send_at": "2030-01-01T09:00:00Z"}]}
    )

    send_at: datetime = Field(description="the new time; in the past means now")

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return utc(value)


class TemplateIn(RequestModel):
    """A stored template: Jinja2, HTML autoescaped, undefined variables are errors."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "subject": "Your order {{ number }}",
                    "html": "<p>Hi {{ name }}, order {{ number }} is on its way.</p>",
                    "text": None,
                    "sample_variables": {"name": "Ana", "number": 1042},
                }
            ]
        },
    )

    subject: HeaderText | None = Field(default=None, max_length=MAX_SUBJECT_CHARS)
    html: str = Field(min_length=1, max_length=MAX_BODY_CHARS)
    text: str | None = Field(default=None, max_length=MAX_BODY_CHARS)
    sample_variables: dict[str, Any] | None = Field(
        default=None,
        description="values the save renders the template with: a render that fails, or goes"
        " over a limit, refuses the save (422); kept with the version for previews",
    )

    @field_validator("sample_variables")
    @classmethod
    def _bounded_samples(cls, variables: dict[str, Any] | None) -> dict[str, Any] | None:
        if variables is not None and len(to_json(variables)) > MAX_TEMPLATE_VARS_BYTES:
            raise ValueError(f"must be at most {MAX_TEMPLATE_VARS_BYTES} bytes as JSON")
        return variables


class TemplateOut(BaseModel):
    """A stored template (versioned, editable through the API) or a file template
    (TEMPLATES_DIR or shipped with Odiseo: no version, no dates)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    source: Literal["stored", "file"] = "stored"
    version: int | None = None
    subject: str | None
    html: str
    text: str | None
    variables: list[str] | None = Field(
        default=None, description="the template_vars a send must give"
    )
    optional_variables: list[str] | None = Field(
        default=None, description="template_vars it uses when given (`default`, `is defined`)"
    )
    sample_variables: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class RenderIn(RequestModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"variables": {"name": "Ana"}}]}
    )

    variables: dict[str, Any] = Field(default_factory=dict)


class RenderOut(BaseModel):
    subject: str | None
    html: str
    text: str


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    kind: str
    type: str | None = Field(description="the published event type, if this entry is one")
    recipient: str | None
    data: dict[str, Any] | None
    attempt: int | None
    smtp_code: int | None
    response: str | None
    duration_ms: int | None
    worker: str | None


class AttachmentOut(BaseModel):
    filename: str
    content_type: str
    content_id: str | None
    size: int


class EmailSummary(BaseModel):
    """A stored message: where it is and what it was."""

    message_id: str
    rfc_message_id: str
    client_message_id: str | None
    status: str
    attempts: int
    max_retries: int
    priority: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    from_email: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    template_id: str | None
    template_version: int | None
    expires_at: datetime | None
    tags: list[str]
    metadata: dict[str, Any]


class EmailOut(EmailSummary):
    """A stored message with its attachments and its whole history."""

    attachments: list[AttachmentOut]
    events: list[EventOut]


class EmailPage(BaseModel):
    items: list[EmailSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class Requeued(BaseModel):
    requeued: int
    status: str


class Problem(BaseModel):
    detail: str
