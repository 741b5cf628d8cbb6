"""Email on the wire: OutgoingEmail to RFC 5322 bytes, header fields, HTML to text. Pure."""

from __future__ import annotations

from odiseo.mime.addresses import ascii_address, is_special_use
from odiseo.mime.headers import (
    ADDR_SPEC,
    CONTENT_ID,
    MEDIA_TYPE,
    check_address,
    check_value,
    display_name,
    value_problem,
)
from odiseo.mime.message import RESERVED_HEADERS, build_message, check_email, check_header_name
from odiseo.mime.text import html_to_text

__all__ = [
    "ADDR_SPEC",
    "CONTENT_ID",
    "MEDIA_TYPE",
    "RESERVED_HEADERS",
    "ascii_address",
    "build_message",
    "check_address",
    "check_email",
    "check_header_name",
    "check_value",
    "display_name",
    "html_to_text",
    "is_special_use",
    "value_problem",
]
