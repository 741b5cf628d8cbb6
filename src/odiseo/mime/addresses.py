"""Addresses as SMTP without SMTPUTF8 takes them, and special-use domain names."""

from __future__ import annotations

import email_validator
import idna

# Special-use and reserved names (.local, .internal, .test, localhost…) and single-label
# hosts (`root@mailhub`) are valid addresses for a relay that serves intranets and test
# setups: its smarthost decides whether they are deliverable. email-validator refuses
# them unless these globals, which its API lets users change, say otherwise;
# REFUSE_SPECIAL_USE_DOMAINS brings the refusal back (is_special_use).
# "internal" was reserved for private use by ICANN in 2024, after email-validator's list.
SPECIAL_USE_DOMAINS = (*email_validator.SPECIAL_USE_DOMAIN_NAMES, "internal")
email_validator.SPECIAL_USE_DOMAIN_NAMES = []
email_validator.GLOBALLY_DELIVERABLE = False
_SUFFIXES = tuple(f".{name}" for name in SPECIAL_USE_DOMAINS)


def is_special_use(address: str) -> bool:
    """Whether the domain of `address` (xn-- form) is special-use or reserved (RFC 6761),
    or no global name at all (one label, or a top-level label that is not a TLD's)."""
    domain = address.rpartition("@")[2].lower()
    labels, _, top = domain.rpartition(".")
    # email-validator's rule for a global name: a dot, and a last label ending in a letter.
    return f".{domain}".endswith(_SUFFIXES) or not labels or not top[-1:].isalpha()


def ascii_address(address: str) -> str:
    """The address with its domain in IDNA (xn--) form, as SMTP without SMTPUTF8 needs.

    Raises:
        ValueError: a non-ASCII local part, which only SMTPUTF8 servers could take.
    """
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise ValueError("non-ASCII before the @ needs SMTPUTF8, which Odiseo does not use")
    if domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError as exc:
        raise ValueError(f"invalid international domain: {exc}") from None


def envelope_address(address: str) -> str:
    """An SMTP envelope address as Odiseo sends to it: validated as email-validator does
    (no DNS), its domain in xn-- form, and writable (an ASCII addr-spec).

    Raises:
        ValueError: it is not one, with why.
    """
    try:
        valid = email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return ascii_address(valid.normalized)
