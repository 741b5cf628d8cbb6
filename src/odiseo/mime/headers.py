"""Header fields written as RFC 5322, 2047 and 2231 allow, and checked once written.

What every field written here holds, whatever value it is given:

- one logical line: a line break is only ever CRLF followed by a space or TAB
  that the value itself had (a fold) or that sits between two encoded-words
  (which decoders drop), so unfolding gives back the value exactly;
- printable ASCII only; anything else is carried in RFC 2047 encoded-words
  (at most 75 characters each) or RFC 2231 parameter values;
- lines of at most 78 characters where a fold point exists, and never more
  than 998 octets;
- a value is refused (InvalidEmail) when it holds a control character other
  than TAB, DEL, a C1 control, U+2028 or U+2029: the characters that
  `str.splitlines()` and mail software take for line breaks.

The everyday case, a short line of printable ASCII, is written directly. Everything
else is folded or encoded here rather than by the standard library's `email`
policies, which on the Python versions Odiseo supports write encoded-words of 76
characters, decode a literal `=?…?=` in the value into something the sender did not
write, encode URLs it cannot fold, and let C0 controls through. The stdlib parser
(`policy.strict`) is the reference the tests decode every field with.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from email.utils import formataddr

from odiseo.errors import InvalidEmail

MAX_LINE = 78  # RFC 5322 §2.1.1: SHOULD
HARD_LINE = 998  # RFC 5322 §2.1.1: MUST
_MAX_WORD = 75  # RFC 2047 §2
_WORD_OVERHEAD = len("=?utf-8?q?") + len("?=")
_ONE_CHARACTER = _WORD_OVERHEAD + 12  # the longest encoded-word of one character

# C0 but TAB, DEL, C1, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NAME = re.compile(r"[!-9;-~]{1,76}")  # ftext (RFC 5322 §3.6.8), no longer than a line
# Printable ASCII words separated by spaces or TABs, nothing at either end: what may
# stand unencoded in a header. A literal encoded-word is excluded by _raw below.
_RAW_TEXT = re.compile(r"[!-~]+(?:[ \t]+[!-~]+)*")
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/^_`{|}~-]+)*")
_SINGLE_SPACED = re.compile(r"[!-~]+(?: [!-~]+)*")
_WSP_RUN = re.compile(r"[ \t]+")
_WORDS = re.compile(r"[ \t]*[^ \t]+")
# RFC 2047 §5 (3): what a Q-encoded word may hold literally anywhere, phrases included.
_Q_LITERAL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
# RFC 2231 attribute-char: CHAR but SPACE, CTLs, "*", "'", "%" and tspecials.
_PARAM_LITERAL = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~"
)
_QUOTABLE = re.compile(r"[ !#-\[\]-~]+")  # a quoted-string's text without '"' and '\'
# A MIME type (RFC 6838 §4.2 restricted-name), ASCII only.
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
MEDIA_TYPE = re.compile(f"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")
_DOT_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
# A Content-ID without its brackets: dot-atom-text, optionally "@" dot-atom-text.
CONTENT_ID = re.compile(f"{_DOT_ATOM}(?:@{_DOT_ATOM})?")
# What email-validator and ascii_address leave of an address: an ASCII dot-atom addr-spec.
ADDR_SPEC = re.compile(f"{_DOT_ATOM}@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def value_problem(value: str) -> str | None:
    """Why `value` cannot be written into a header, or None when it can."""
    if _CONTROL.search(value):
        return (
            "must not contain control characters (only TAB is allowed), "
            "nor line or paragraph separators"
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (no lone surrogates)"
    return None


def check_value(field: str, value: str) -> None:
    """Raise InvalidEmail naming `field` when `value` cannot go into a header."""
    problem = value_problem(value)
    if problem is not None:
        raise InvalidEmail(f"{field}: {problem}")


def check_name(name: str) -> None:
    """Raise InvalidEmail unless `name` is a header field name (1-76 printable, no colon)."""
    if not _NAME.fullmatch(name):
        raise InvalidEmail(f"headers: {name!r} is not a valid header name")


def display_name(name: str) -> str:
    """`name` as mail readers show a display name: runs of spaces and TABs as one space,
    none at either end (the standard library's parser reads it back so)."""
    return " ".join(_WSP_RUN.split(name.strip(" \t")))


def check_address(field: str, address: str) -> None:
    """Raise InvalidEmail unless `address` is an ASCII addr-spec that needs no quoting and
    that no reader could take for an encoded-word (`=?…?=`), which some decode."""
    if len(address) > 254 or not ADDR_SPEC.fullmatch(address) or "=?" in address:
        raise InvalidEmail(f"{field}: {address!r} is not an address Odiseo can write")


# -- writing -------------------------------------------------------------------------


def unstructured(name: str, value: str, *, field: str | None = None) -> bytes:
    """`Name: value` and CRLF: raw where it can be, folded at the value's own whitespace,
    RFC 2047 encoded-words otherwise. `field` names the value in errors."""
    check_name(name)
    check_value(field or name, value)
    if not value:
        return f"{name}:\r\n".encode("ascii")
    if _raw(value):
        if len(name) + 2 + len(value) <= MAX_LINE:  # the everyday case
            return f"{name}: {value}\r\n".encode("ascii")
        lines = _fold(f"{name}:", _WORDS.findall(value))
        if lines is not None:
            return _lines(lines)
    return _lines(_encoded_lines(f"{name}:", value, tail=""))


def mailbox(name: str, address: str, phrase: str | None, *, field: str | None = None) -> bytes:
    """`Name: Display <address>` and CRLF; the display name (`phrase`) normalised as
    `display_name` says, then quoted or encoded as needed."""
    check_address(field or name, address)
    if phrase:
        check_value(f"{name.lower()}_name", phrase)
        phrase = display_name(phrase)
    if not phrase:
        return f"{name}: {address}\r\n".encode("ascii")
    if _ATOMS.fullmatch(phrase):  # the everyday name: no quoting needed
        line = f"{name}: {phrase} <{address}>"
        if len(line) <= MAX_LINE:
            return f"{line}\r\n".encode("ascii")
    elif _SINGLE_SPACED.fullmatch(phrase) and "=?" not in phrase:
        line = f"{name}: {formataddr((phrase, address))}"
        if len(line) <= MAX_LINE:
            return f"{line}\r\n".encode("ascii")
    return _lines(_encoded_lines(f"{name}:", phrase, tail=f" <{address}>"))


def address_list(name: str, addresses: Iterable[str], *, field: str | None = None) -> bytes:
    """`Name: a, b, …` and CRLF, folded after the commas."""
    items = list(addresses)
    for address in items:
        check_address(field or name, address)
    words = [f" {a}," for a in items]
    words[-1] = words[-1].rstrip(",")
    words[0] = words[0].lstrip()
    lines = _fold(f"{name}:", words)
    assert lines is not None  # an address is at most 254 characters
    return _lines(lines)


def parameterised(head: str, params: Iterable[tuple[str, str]]) -> bytes:
    """`Content-Type: type; name=value; …` and CRLF, with RFC 2231 for what cannot be quoted.

    `head` is trusted text (`Content-Type: text/plain`); each value is any text.
    """
    pieces: list[list[str]] = []
    for attribute, value in params:
        check_value(attribute, value)
        pieces.append(_parameter(attribute, value))
    single = [p[0] for p in pieces if len(p) == 1]
    if len(single) == len(pieces):
        line = "; ".join([head, *single])
        if len(line) <= MAX_LINE:
            return f"{line}\r\n".encode("ascii")
    lines = [head + ";" if pieces else head]
    for index, sections in enumerate(pieces):
        last = index == len(pieces) - 1
        lines += [
            f" {section}" + ("" if last and n == len(sections) - 1 else ";")
            for n, section in enumerate(sections)
        ]
    return _lines(lines)


def _parameter(attribute: str, value: str) -> list[str]:
    """`attr="value"`, or its RFC 2231 form split into sections of short lines."""
    if value and _QUOTABLE.fullmatch(value) and "=?" not in value:
        plain = f'{attribute}="{value}"'
        if len(plain) < MAX_LINE - 1:
            return [plain]
    escaped = [_percent(char) for char in value]
    whole = f"{attribute}*=utf-8''{''.join(escaped)}"
    if len(whole) < MAX_LINE - 1:
        return [whole]
    sections: list[str] = []
    current = f"{attribute}*0*=utf-8''"
    for piece in escaped:
        if len(current) + len(piece) >= MAX_LINE - 1 and not current.endswith(("=", "'")):
            sections.append(current)
            current = f"{attribute}*{len(sections)}*="
        current += piece
    return [*sections, current]


def _percent(char: str) -> str:
    data = char.encode("utf-8")
    if len(data) == 1 and data[0] in _PARAM_LITERAL:
        return char
    return "".join(f"%{byte:02X}" for byte in data)


def _raw(value: str) -> bool:
    """Whether `value` may stand in a header as it is (see _RAW_TEXT)."""
    return _RAW_TEXT.fullmatch(value) is not None and "=?" not in value


def _fold(first: str, words: list[str]) -> list[str] | None:
    """`first` followed by `words` (each with the whitespace before it) in lines of at
    most 78 characters where a word allows; None when a line would pass 998."""
    lines = [first]
    for index, word in enumerate(words):
        if index == 0:
            lines[-1] += " " + word.lstrip(" \t")
        elif len(lines[-1]) + len(word) > MAX_LINE:
            lines.append(word)  # the fold: a line break before the value's own whitespace
        else:
            lines[-1] += word
    return None if max(map(len, lines)) > HARD_LINE else lines


def _encoded_lines(first: str, text: str, *, tail: str) -> list[str]:
    """`first`, then `text` as encoded-words one per line, then `tail` (trusted ASCII)."""
    data = text.encode("utf-8")
    quoted = sum(1 if byte in _Q_LITERAL or byte == 0x20 else 3 for byte in data)
    scheme = "q" if quoted <= 4 * ((len(data) + 2) // 3) else "b"
    room = MAX_LINE - len(first) - 1
    if room >= _ONE_CHARACTER:
        words = _encoded_words(text, scheme=scheme, first=room)
        lines = [f"{first} {words[0]}", *(f" {word}" for word in words[1:])]
    else:  # a long name: the words start on the next line, as a fold allows
        lines = [first, *(f" {word}" for word in _encoded_words(text, scheme=scheme, first=75))]
    if tail and len(lines[-1]) + len(tail) > MAX_LINE:
        lines.append(tail)
    else:
        lines[-1] += tail
    return lines


def _encoded_words(text: str, *, scheme: str, first: int) -> list[str]:
    """`text` as encoded-words of whole characters, each at most 75 characters long
    (the first at most `first`)."""
    words: list[str] = []
    chunk = bytearray()
    quoted = 0  # the Q-encoded length of `chunk`
    limit = min(first, _MAX_WORD) - _WORD_OVERHEAD
    for char in text:
        data = char.encode("utf-8")
        cost = sum(1 if byte in _Q_LITERAL or byte == 0x20 else 3 for byte in data)
        longer = 4 * ((len(chunk) + len(data) + 2) // 3) if scheme == "b" else quoted + cost
        if chunk and longer > limit:
            words.append(_encoded_word(bytes(chunk), scheme))
            chunk.clear()
            quoted = 0
            limit = _MAX_WORD - _WORD_OVERHEAD
        chunk += data
        quoted += cost
    words.append(_encoded_word(bytes(chunk), scheme))
    return words


def _encoded_word(data: bytes, scheme: str) -> str:
    if scheme == "b":
        return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="
    text = "".join(
        "_" if byte == 0x20 else chr(byte) if byte in _Q_LITERAL else f"={byte:02X}"
        for byte in data
    )
    return f"=?utf-8?q?{text}?="


def _lines(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


# -- the finished bytes --------------------------------------------------------------

# Fields: a name, a colon, printable words; continuation lines that carry text; CRLF each.
# Possessive: each run of blanks or of printable characters is taken whole, never given
# back, so the engine steps a word at a time instead of a character at a time. No run
# can end anywhere else (blanks, printable characters and CR exclude each other), so it
# accepts the same blocks as the plain pattern (tests/unit/test_mime_properties.py compares).
_BLOCK = re.compile(rb"(?:[!-9;-~]{1,76}:(?:[ \t]*+[!-~]++)*+\r\n(?:(?:[ \t]++[!-~]++)++\r\n)*+)++")


def check_block(block: bytes) -> int:
    """How many header fields `block` holds, after checking every line: printable ASCII,
    at most 998 octets, a name and a colon or a continuation that carries text, no
    trailing whitespace, CRLF line ends.

    Raises:
        InvalidEmail: a line breaks one of these rules; nothing written so is sent.
    """
    if not _BLOCK.fullmatch(block):
        raise InvalidEmail("message: a malformed header line was written")
    if len(block) > HARD_LINE and max(map(len, block.split(b"\r\n"))) > HARD_LINE:
        raise InvalidEmail("message: a header line is longer than 998 octets")
    return block.count(b"\r\n") - block.count(b"\r\n ") - block.count(b"\r\n\t")
