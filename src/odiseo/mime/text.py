"""HTML to plain text, for the text/plain alternative of an HTML message. Pure.

One regular-expression pass over the HTML (`re.sub`, each token replaced by the
separator it stands for), so its cost is linear in the input whatever it holds:
every quantifier is possessive or stops at the next `<`, and a comment, script,
style, head or title runs lazily to its end *or the end of the input*, so an
unclosed one is one match, never a search repeated from every `<` (regular
expressions that require the closing `-->` or `</script>`, and the standard
library's `html.parser` on the Python versions Odiseo supports, take quadratic
time on input full of unclosed ones, and a worker derives this text for every
message that has none). Browsers' rules are followed where they matter: an
unclosed comment or script runs to the end, a `<` that does not start a tag is text.
"""

from __future__ import annotations

import html as htmllib
import re

_HIDDEN = ("script", "style", "head", "title")  # dropped with their content
_SKIPPED = "|".join(
    rf"(?i:{name})(?![A-Za-z0-9-])[^<>]*+>(?s:.*?)(?:</(?i:{name})\s*+>|\Z)" for name in _HIDDEN
)
# A comment or hidden element to its end (or the input's), a tag (groups: the closing
# slash, the name, the attributes), or a declaration (<!DOCTYPE …>, <?xml …?>).
_TOKEN = re.compile(
    rf"<(?:!--(?s:.*?)(?:-->|\Z)|{_SKIPPED}|(/?)([A-Za-z][A-Za-z0-9-]*+)([^<>]*+)>|[!?][^<>]*+>)"
)
_HREF = re.compile(r"""\bhref\s*=\s*["']?((?:https?://|mailto:)[^"'\s>]+)""", re.I)
_BLOCKS = (
    "address", "article", "aside", "blockquote", "div", "dl", "dt", "dd", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul",
)  # fmt: skip
# What a tag becomes, by its lower-case name, "/" first when it closes; others vanish.
_SEPARATORS = {
    **{name: "\n\n" for name in _BLOCKS},
    **{"/" + name: "\n\n" for name in _BLOCKS},
    "br": "\n",
    "/br": "\n",
    "li": "\n- ",
    "/td": " ",  # cells of a row stay apart
    "/th": " ",
}
# Runs of two or more of these, or one that is not a space (single spaces stay as they
# are): a whitespace character, unless it is a space with no whitespace after it.
_SPACES = re.compile(r"[ \t\r\f\v](?<! (?![ \t\r\f\v]))[ \t\r\f\v]*+")
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """A plain-text rendering of an HTML body: blocks as paragraphs, list items as
    `- `, links as `text (url)`, scripts, styles and comments dropped."""
    link: str | None = None  # the URL of the <a href> whose text is being written

    def separator(token: re.Match[str]) -> str:
        nonlocal link
        name = token[2]
        if name is None:  # a comment, a hidden element, a declaration
            return ""
        name = name.lower()
        if name == "a":
            if token[1]:
                url, link = link, None
                return "" if url is None else f" ({url.removeprefix('mailto:')})"
            found = _HREF.search(token[3])
            link = found[1] if found else None
            return ""
        return _SEPARATORS.get("/" + name if token[1] else name, "")

    # The source's line breaks are spaces (the tags say where lines end); inside a tag
    # they are whitespace either way.
    return _tidy(_TOKEN.sub(separator, html.replace("\n", " ").replace("\r", " ")))


def _tidy(marked: str) -> str:
    """Entities decoded, lines trimmed, runs of spaces and of blank lines cut."""
    text = htmllib.unescape(marked) if "&" in marked else marked
    lines = (line.strip() for line in _SPACES.sub(" ", text).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"
