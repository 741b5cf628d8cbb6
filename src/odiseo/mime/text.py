"""HTML to plain text, for the text/plain alternative of an HTML message. Pure."""

from __future__ import annotations

import html as htmllib
import re

_DROP = re.compile(r"<(script|style|head|title)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_LINK = re.compile(
    r"""<a\b[^>]*?\bhref\s*=\s*["']?((?:https?://|mailto:)[^"'\s>]+)["']?[^>]*>(.*?)</a\s*>""",
    re.I | re.S,
)
_BREAK = re.compile(r"<br\s*/?>", re.I)
_ITEM = re.compile(r"<li\b[^>]*>", re.I)
_BLOCK = re.compile(  # address article aside blockquote div dl dt dd fieldset … tr ul, as a trie
    r"</?(?:address|article|aside|blockquote|d(?:iv|[ldt])|f(?:ieldset|igcaption|igure|ooter|orm)"
    r"|h(?:[1-6r]|eader)|main|nav|ol|p(?:re)?|section|t(?:able|r)|ul)\b[^>]*>",
    re.I,
)
_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\r\f\v]{2,}|[\t\r\f\v]")  # single spaces stay as they are
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")


def _link_text(match: re.Match[str]) -> str:
    return f"{match.group(2)} ({match.group(1).removeprefix('mailto:')})"


def html_to_text(html: str) -> str:
    """A plain-text rendering of an HTML body, for the text/plain alternative."""
    text = _COMMENT.sub("", _DROP.sub("", html))
    text = _LINK.sub(_link_text, text.replace("\n", " ").replace("\r", " "))
    text = _BREAK.sub("\n", text)
    text = _ITEM.sub("\n- ", text)
    text = _BLOCK.sub("\n\n", text)
    text = htmllib.unescape(_TAG.sub("", text))
    lines = (line.strip() for line in _SPACES.sub(" ", text).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"
