"""HTML to plain text, for the text/plain alternative of an HTML message. Pure.

One pass over the HTML with `str.find`, so its cost is linear in the input
whatever it holds: regular expressions that look for a closing `>`, `-->` or
`</script>` from every `<` (and the standard library's `html.parser` on the
Python versions Odiseo supports) take quadratic time on input full of unclosed
ones, and a worker derives this text for every message that has none.
Browsers' rules are followed where they matter: an unclosed comment or script
runs to the end, a `<` that does not start a tag is text.
"""

from __future__ import annotations

import html as htmllib
import re

# A tag, a comment's start, or a declaration (<!DOCTYPE …>, <?xml …?>). Possessive
# quantifiers that stop at the next '<': no attempt backtracks or scans past it, so the
# search is linear in the input.
_TOKEN = re.compile(r"<(?:(!--)|(/?)([A-Za-z][A-Za-z0-9-]*+)([^<>]*+)>|[!?][^<>]*+>)")
_HREF = re.compile(r"""\bhref\s*=\s*["']?((?:https?://|mailto:)[^"'\s>]+)""", re.I)
_HIDDEN = {  # dropped with their content, up to their end tag
    name: re.compile(rf"</{name}\s*>", re.I) for name in ("script", "style", "head", "title")
}
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "div", "dl", "dt", "dd", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul",
    }
)  # fmt: skip
_SPACES = re.compile(r"[ \t\r\f\v]{2,}|[\t\r\f\v]")  # single spaces stay as they are
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """A plain-text rendering of an HTML body: blocks as paragraphs, list items as
    `- `, links as `text (url)`, scripts, styles and comments dropped."""
    out: list[str] = []
    link: str | None = None  # the URL of the <a href> whose text is being written
    pos = 0
    while (token := _TOKEN.search(html, pos)) is not None:
        out.append(_spaced(html[pos : token.start()]))
        pos = token.end()
        if token[1]:  # <!--
            finish = html.find("-->", pos)
            pos = len(html) if finish < 0 else finish + 3
            continue
        if token[3] is None:
            continue  # <!DOCTYPE …>, <?xml …?>
        tag, closing = token[3].lower(), token[2] == "/"
        if tag in _HIDDEN and not closing:
            found = _HIDDEN[tag].search(html, pos)
            pos = len(html) if found is None else found.end()
        elif tag == "a":
            link = _link(token[4], closing, link, out)
        else:
            out.append(_separator(tag, closing))
    out.append(_spaced(html[pos:]))
    return _tidy("".join(out))


def _link(tag: str, closing: bool, link: str | None, out: list[str]) -> str | None:
    """Follow an <a> or </a>: the URL now pending, after writing the one that closes."""
    if closing:
        if link is not None:
            out.append(f" ({link.removeprefix('mailto:')})")
        return None
    found = _HREF.search(tag)
    return found[1] if found else None


def _separator(tag: str, closing: bool) -> str:
    if tag == "br":
        return "\n"
    if tag == "li" and not closing:
        return "\n- "
    if tag in ("td", "th") and closing:
        return " "  # cells of a row stay apart
    return "\n\n" if tag in _BLOCKS else ""


def _spaced(text: str) -> str:
    """Text of the source: its line breaks are spaces (the tags say where lines end)."""
    return text.replace("\n", " ").replace("\r", " ")


def _tidy(marked: str) -> str:
    """Entities decoded, lines trimmed, runs of spaces and of blank lines cut."""
    text = htmllib.unescape(marked) if "&" in marked else marked
    lines = (line.strip() for line in _SPACES.sub(" ", text).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"
