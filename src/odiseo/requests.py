"""The request to send an email, as the HTTP API and odiseo.transactional read it.

One model, `EmailIn`, with every rule a request is checked by before anything is
stored: the API parses POST /emails bodies into it, the CLI's `odiseo send` builds
it, and `odiseo.transactional.enqueue` validates an application's email with it
before calling the database function, so a Python caller gets the API's exact
errors (`describe_errors` writes the API's 422 `detail`).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import mimetypes
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

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
from odiseo.rendering import TEMPLATE_ID_PATTERN
from odiseo.service import DEFAULT_PRIORITY, MAX_SUBJECT_CHARS, EmailRequest

MAX_RECIPIENTS = 50
MAX_ATTACHMENTS = 50
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


def check_json(value: Any, path: str) -> None:
    """Refuse what no field should hold: lone surrogates, NUL, NaN/Infinity, deep nesting.

    The walk is iterative and builds no paths; only a refused value is looked for
    again, to name where it is.
    """
    if not _plain_and_sane(value):
        _name_the_problem(value, path, 0)


def _plain_and_sane(value: Any) -> bool:
    """Whether `value` passes check_json, with every container of plain JSON types.

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
    """Raise ValueError naming where `value` breaks a check_json rule."""
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
        check_json(data, "")
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
        default=None, pattern=TEMPLATE_ID_PATTERN, description="a stored or file template"
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
        if len(to_json(metadata)) > 4096:  # NaN and Infinity were refused by check_json
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


# The API's other request bodies the dashboard's forms are validated with too.


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


def error_list(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Each problem's location, message and type; never the rejected input itself."""
    return [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


def describe_errors(errors: Sequence[Any], *, skip_first: bool = False) -> str:
    """`field.path: message; …` — `skip_first` drops the leading 'body'/'query' part."""
    parts = []
    for e in error_list(errors):
        loc = e["loc"][1:] if skip_first and len(e["loc"]) > 1 else e["loc"]
        parts.append(f"{'.'.join(loc) or 'body'}: {e['msg']}")
    return "; ".join(parts)
