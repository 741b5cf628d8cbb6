"""Which refusals mean an address is bad: the suppression rule (README, "Suppressions").

Only a recipient refused at RCPT can be suppressed, and only when the refusal says
the mailbox or the address does not exist or cannot take mail — never for policy,
spam or content refusals, nor for a bad *sender* address, which concern the message.

| reply                                            | suppress? |
|--------------------------------------------------|-----------|
| enhanced 5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10      | yes       |
| any other enhanced code (5.1.7/5.1.8 sender,     | no        |
|   5.7.x policy, 5.2.x mailbox full, 4.x.x …)     |           |
| 550, 551, 553 without an enhanced code, unless   | yes       |
|   the text speaks of policy, spam or blocking    |           |
| anything else (4xx, 552, 554 …)                  | no        |
"""

from __future__ import annotations

import re

BAD_ADDRESS_DETAILS = frozenset({(1, 1), (1, 2), (1, 3), (1, 6), (1, 10)})
BAD_ADDRESS_CODES = frozenset({550, 551, 553})
# After the reply's own three-digit code, as the provider stores a refusal ("550 5.1.1 …").
_ENHANCED = re.compile(r"\s*(?:\d{3}[ -])?\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
_POLICY = re.compile(
    r"polic|spam|block|blacklist|reputation|reject(ed)? for|listed|abuse|dmarc|spf|dkim"
    r"|rate limit|too many|relay",
    re.IGNORECASE,
)


def enhanced_status(response: str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code a reply text starts with (after its reply
    code, if the text has one), if any."""
    found = _ENHANCED.match(response)
    if found is None:
        return None
    klass, subject, detail = (int(part) for part in found.groups())
    return klass, subject, detail


def bad_address(code: int, response: str) -> bool:
    """Whether a RCPT refusal with this reply means the address itself is bad."""
    if not 500 <= code < 600:
        return False
    enhanced = enhanced_status(response)
    if enhanced is not None:
        klass, subject, detail = enhanced
        return klass == 5 and (subject, detail) in BAD_ADDRESS_DETAILS
    return code in BAD_ADDRESS_CODES and _POLICY.search(response) is None


def normalise_address(address: str) -> str:
    """The suppression list's key for an address: trimmed and lower-cased."""
    return address.strip().lower()
