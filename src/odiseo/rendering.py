"""Jinja2 templates: sandboxed, bounded, HTML autoescaped, undefined variables are errors.

A template `NAME` is `NAME.html` in TEMPLATES_DIR (or among the templates
shipped with Odiseo), with optional `NAME.subject.txt` and `NAME.txt` beside it
for the subject line and the plain-text part.

Bounds. The sandbox refuses, before computing it, whatever makes a huge value in
one step: an integer power or product past MAX_INT_DIGITS digits (Python cannot
even print more), a repetition (`'x' * n`, `[0] * n`) longer than a part may be,
a range over MAX_RANGE numbers or, all the ranges of one render together, over
MAX_RANGE_TOTAL, and lipsum() past MAX_LIPSUM_WORDS. The intercepted operators
are never folded at compile time, so a constant `7 ** (7 ** 8)` costs nothing
to compile. Each part is counted while it streams out and stopped past
`max_rendered_bytes`. Time and memory cannot be bounded from inside the process
(one C call cannot be interrupted): render_process.py runs this renderer in a
child process that it kills at a deadline, under an address-space limit.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

from odiseo.errors import MissingVariable, TemplateError, TemplateLimit, UnknownTemplate

TEMPLATE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # used with fullmatch
# Jinja's words for a variable the context lacks ("'name' is undefined").
_UNDEFINED_NAME = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)' is undefined")
# The same for pydantic's `pattern`, which searches (its Rust engine's `$` is the very end).
TEMPLATE_ID_PATTERN = f"^{TEMPLATE_ID.pattern}$"
# The template's own line breaks, with the spaces around them (its other spaces stay).
_LINE_BREAKS = re.compile(r"[ \t]*(?:\r\n|[\r\n])[ \t]*")

DEFAULT_MAX_RENDERED_BYTES = 1024 * 1024
MAX_RANGE = 100_000  # numbers in one range(), as Jinja's own sandbox allows
MAX_RANGE_TOTAL = 1_000_000  # numbers all the range() calls of one render may make
MAX_INT_DIGITS = 4300  # Python's own limit for turning an int into text
MAX_LIPSUM_WORDS = 10_000  # paragraphs x most words per paragraph, per lipsum() call
_INT_BITS = int(MAX_INT_DIGITS * math.log2(10))
# Compiled stored templates kept for the next render: sources up to this size, this many.
_CACHED_SOURCE_CHARS = 65_536
_CACHED_TEMPLATES = 64


class _OverLimit(SecurityError):
    """A render would go over one of its limits; the message names it."""


class _Allowance:
    """What the render under way may still use (a renderer renders one thing at a time)."""

    def __init__(self) -> None:
        self.range_left = MAX_RANGE_TOTAL

    def reset(self) -> None:
        self.range_left = MAX_RANGE_TOTAL

    def range(self, *args: int) -> range:
        """range() for templates: refused past MAX_RANGE, and past MAX_RANGE_TOTAL per render."""
        numbers = range(*args)
        try:
            count = len(numbers)
        except OverflowError:  # more than sys.maxsize numbers
            count = MAX_RANGE + 1
        if count > MAX_RANGE:
            raise _OverLimit(f"range() of {count} numbers; one range may have {MAX_RANGE}")
        self.range_left -= count
        if self.range_left < 0:
            raise _OverLimit(
                f"the range() calls of one render may make {MAX_RANGE_TOTAL} numbers in all"
            )
        return numbers

    @staticmethod
    def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:
        """Jinja's lipsum(), refused past MAX_LIPSUM_WORDS words."""
        if isinstance(n, int) and isinstance(max, int) and n * max > MAX_LIPSUM_WORDS:
            raise _OverLimit(
                f"lipsum({n}, max={max}) could make {n * max} words; at most {MAX_LIPSUM_WORDS}"
            )
        return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with `*` and `**` checked before they compute anything."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, *, allowance: _Allowance, max_items: int, **options: Any) -> None:
        super().__init__(**options)
        self.max_items = max_items
        self.globals["range"] = allowance.range
        self.globals["lipsum"] = allowance.lipsum

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
        else:
            _check_product(left, right, self.max_items)
        return super().call_binop(context, operator, left, right)


def _check_power(base: Any, exponent: Any) -> None:
    if not isinstance(base, int) or not isinstance(exponent, int) or exponent <= 0:
        return  # a float result overflows quickly by itself; a negative exponent gives one
    if abs(base) <= 1:
        return
    digits = exponent * math.log10(abs(base))
    if digits > MAX_INT_DIGITS:
        raise _OverLimit(
            f"{_short(base)} ** {_short(exponent)} would have about {digits:.0f} digits;"
            f" numbers may have {MAX_INT_DIGITS}"
        )


def _check_product(left: Any, right: Any, max_items: int) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > _INT_BITS:
            raise _OverLimit(
                f"{_short(left)} * {_short(right)} would be too large a number;"
                f" numbers may have {MAX_INT_DIGITS} digits"
            )
        return
    if isinstance(left, int):
        left, right = right, left
    if isinstance(right, int) and isinstance(left, str | list | tuple):
        size = len(left) * right
        if size > max_items:
            unit = "characters" if isinstance(left, str) else "items"
            raise _OverLimit(
                f"{_short(left)} * {_short(right)} would make {size} {unit};"
                f" a render may make {max_items} (MAX_RENDERED_BYTES)"
            )


def _short(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 200:
        return f"<a number of {value.bit_length()} bits>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _collect(chunks: Iterable[str], *, limit: int, part: str) -> str:
    """The rendered text, stopped as soon as it is known to go over `limit` bytes."""
    pieces: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)  # characters: never more than the UTF-8 bytes
        if size > limit:
            raise _OverLimit(f"the {part} is over {limit} bytes (MAX_RENDERED_BYTES)")
        pieces.append(chunk)
    text = "".join(pieces)
    if "\0" in text:
        raise ValueError(f"the {part} holds a NUL character")
    if not text.isascii():
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(f"the {part} holds invalid unicode (a lone surrogate)") from None
        if size > limit:
            raise _OverLimit(f"the {part} is over {limit} bytes (MAX_RENDERED_BYTES)")
    return text


@dataclass(frozen=True, kw_only=True)
class Rendered:
    """The parts a template produced; subject and text are None when it has none."""

    subject: str | None
    html: str
    text: str | None


class Renderer:
    """Renders file templates by id and stored templates from their source, within limits.

    Not thread-safe: one render at a time (the render process runs one).
    """

    def __init__(
        self, templates_dir: Path | None, *, max_rendered_bytes: int = DEFAULT_MAX_RENDERED_BYTES
    ) -> None:
        loaders: list[Any] = []
        if templates_dir is not None:
            loaders.append(FileSystemLoader(str(templates_dir)))
        loaders.append(PackageLoader("odiseo", "templates"))
        self.max_rendered_bytes = max_rendered_bytes
        self._allowance = _Allowance()
        options: dict[str, Any] = {
            "allowance": self._allowance,
            "max_items": max_rendered_bytes,
            "loader": ChoiceLoader(loaders),
            "undefined": StrictUndefined,
        }
        self._html = _Sandbox(autoescape=True, **options)
        self._plain = _Sandbox(autoescape=False, **options)
        self._compiled: OrderedDict[tuple[bool, str], Template] = OrderedDict()

    def render(self, template_id: str, variables: dict[str, Any]) -> Rendered:
        """Render the template's parts with `variables`.

        Raises:
            UnknownTemplate: no template of that id.
            TemplateLimit: the render went over a limit (the message names it).
            TemplateError: a syntax error, an undefined variable or a sandbox refusal.
        """
        if not TEMPLATE_ID.fullmatch(template_id) or ".." in template_id:
            raise UnknownTemplate(f"unknown template: {template_id!r}")
        self._allowance.reset()
        try:
            html = self._html.get_template(f"{template_id}.html")
        except TemplateNotFound:
            raise UnknownTemplate(f"unknown template: {template_id!r}") from None
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template {template_id!r} is invalid: {exc.message}") from None
        except _COMPILE_FAILURES as exc:
            raise TemplateError(f"template {template_id!r} is invalid: {_why(exc)}") from None
        try:
            source: str | None = self._plain.loader.get_source(  # type: ignore[union-attr]
                self._plain, f"{template_id}.subject.txt"
            )[0]
        except TemplateNotFound:
            source = None
        text = self._optional(f"{template_id}.txt", variables)
        return Rendered(
            subject=self._subject(source, template_id, variables),
            html=self._run(html, variables, name=template_id, part="html part"),
            text=text,
        )

    def _subject(self, source: str | None, name: str, variables: dict[str, Any]) -> str | None:
        """The subject line: the template's own line breaks are folded away before rendering,
        so a line break left afterwards came from a variable, and is refused."""
        if source is None:
            return None
        folded = _LINE_BREAKS.sub(" ", source).strip(" \t")
        rendered = self._from_string(self._plain, folded, name, variables, part="subject") or ""
        if any(c in rendered for c in "\r\n\0"):
            raise TemplateError(
                f"template {name!r}: a variable put line breaks or NUL in the subject"
            )
        return rendered.strip()

    def render_source(
        self,
        template_id: str,
        *,
        subject: str | None,
        html: str,
        text: str | None,
        variables: dict[str, Any],
    ) -> Rendered:
        """Render a stored template's parts (same sandbox and rules as file templates)."""
        self._allowance.reset()
        rendered_subject = self._subject(subject, template_id, variables)
        rendered_text = self._from_string(
            self._plain, text, template_id, variables, part="text part"
        )
        rendered_html = self._from_string(
            self._html, html, template_id, variables, part="html part"
        )
        return Rendered(
            subject=rendered_subject,
            html=rendered_html or "",
            text=rendered_text,
        )

    def check(
        self,
        template_id: str,
        *,
        subject: str | None,
        html: str,
        text: str | None,
        sample_variables: dict[str, Any] | None,
    ) -> None:
        """Refuse, before saving, a template that fails check_source or a limit when rendered.

        Each part is rendered with `sample_variables`, or with none: then a variable
        the template needs stops that part's render without refusing the save, but
        whatever the part computes before it is checked. With sample values given,
        any failure refuses the save.
        """
        self.check_source(template_id, subject, html, text)
        variables = sample_variables or {}
        renders: tuple[Callable[[], object], ...] = (
            lambda: self._subject(subject, template_id, variables),
            lambda: self._from_string(self._plain, text, template_id, variables, part="text part"),
            lambda: self._from_string(self._html, html, template_id, variables, part="html part"),
        )
        for render in renders:
            self._allowance.reset()
            try:
                render()
            except TemplateLimit as exc:
                raise TemplateLimit(_with_samples(exc, sample_variables)) from None
            except TemplateError as exc:
                if sample_variables is not None:
                    raise TemplateError(_with_samples(exc, sample_variables)) from None

    def variables(self, *parts: str | None) -> tuple[list[str], list[str]]:
        """The variables a template's parts read from the request (not those it sets
        itself): those it needs, and those it only tests (`is defined`) or gives a
        `default`."""
        names: set[str] = set()
        optional: set[str] = set()
        for source in parts:
            if source is None:
                continue
            tree = self._html.parse(source)
            names |= meta.find_undeclared_variables(tree)
            for node in tree.find_all((nodes.Filter, nodes.Test)):
                guarded = node.name in {"default", "d", "defined", "undefined"}
                if guarded and isinstance(node.node, nodes.Name):
                    optional.add(node.node.name)
        names -= set(self._html.globals)
        return sorted(names - optional), sorted(names & optional)

    def files(self) -> list[dict[str, Any]]:
        """Every file template (TEMPLATES_DIR, then the shipped ones): its parts and variables."""
        found = []
        loader = self._html.loader
        assert loader is not None
        for name in loader.list_templates():
            template_id = name.removesuffix(".html")
            if name == template_id or not TEMPLATE_ID.fullmatch(template_id):
                continue
            parts: dict[str, str | None] = {"html": loader.get_source(self._html, name)[0]}
            for part, suffix in (("subject", ".subject.txt"), ("text", ".txt")):
                try:
                    parts[part] = loader.get_source(self._html, template_id + suffix)[0]
                except TemplateNotFound:
                    parts[part] = None
            needed, optional = self.variables(*parts.values())
            found.append(
                {"id": template_id, **parts, "variables": needed, "optional_variables": optional}
            )
        return found

    def check_source(self, template_id: str, *parts: str | None) -> None:
        """Refuse, before saving, a template that does not parse or reaches for internals.

        The sandbox would stop `{{ x.__class__ }}` at render time anyway; refusing it at
        save time means a bad template never reaches the store.
        """
        if not TEMPLATE_ID.fullmatch(template_id) or ".." in template_id:
            raise TemplateError(
                "template id: letters, digits, '_', '-', '.' only (at most 128 characters)"
            )
        for source in parts:
            if source is None:
                continue
            try:
                tree = self._html.parse(source)
            except TemplateSyntaxError as exc:
                raise TemplateError(f"line {exc.lineno}: {exc.message}") from None
            except _COMPILE_FAILURES as exc:
                raise TemplateError(f"template {template_id!r} is invalid: {_why(exc)}") from None
            for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
                if isinstance(node, nodes.Getattr):
                    name: object = node.attr
                else:
                    assert isinstance(node, nodes.Getitem)
                    name = _constant(node.arg)
                if isinstance(name, str) and name.startswith("_"):
                    raise TemplateError(f"access to {name!r} is not allowed in templates")
            for flt in tree.find_all(nodes.Filter):
                named = [_constant(arg) for arg in flt.args]
                if flt.name == "attr" and any(
                    isinstance(n, str) and n.startswith("_") for n in named
                ):
                    name = named[0]
                    raise TemplateError(f"access to {name!r} is not allowed in templates")

    def _from_string(
        self,
        environment: _Sandbox,
        source: str | None,
        name: str,
        variables: dict[str, Any],
        *,
        part: str,
    ) -> str | None:
        if source is None:
            return None
        return self._run(self._compile(environment, source, name), variables, name=name, part=part)

    def _compile(self, environment: _Sandbox, source: str, name: str) -> Template:
        """The compiled template, kept for the next render when its source is small."""
        key = (environment is self._html, source)
        found = self._compiled.get(key)
        if found is not None:
            self._compiled.move_to_end(key)
            return found
        try:
            template = environment.from_string(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template {name!r} is invalid: {exc.message}") from None
        except _COMPILE_FAILURES as exc:
            raise TemplateError(f"template {name!r} is invalid: {_why(exc)}") from None
        if len(source) <= _CACHED_SOURCE_CHARS:
            self._compiled[key] = template
            if len(self._compiled) > _CACHED_TEMPLATES:
                self._compiled.popitem(last=False)
        return template

    def _optional(self, name: str, variables: dict[str, Any]) -> str | None:
        try:
            template = self._plain.get_template(name)
        except TemplateNotFound:
            return None
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template {name!r} is invalid: {exc.message}") from None
        except _COMPILE_FAILURES as exc:
            raise TemplateError(f"template {name!r} is invalid: {_why(exc)}") from None
        return self._run(template, variables, name=name, part="text part")

    def _run(self, template: Template, variables: dict[str, Any], *, name: str, part: str) -> str:
        try:
            return _collect(template.generate(variables), limit=self.max_rendered_bytes, part=part)
        except _OverLimit as exc:
            raise TemplateLimit(f"template {name!r}: {exc}") from None
        except RecursionError:
            raise TemplateLimit(
                f"template {name!r}: recursion too deep (a macro or include that calls itself?)"
            ) from None
        except MemoryError:
            raise TemplateLimit(
                f"template {name!r}: rendering needs more memory than TEMPLATE_RENDER_MEMORY_BYTES"
            ) from None
        except UndefinedError as exc:
            said = exc.message or "a variable is undefined"
            named = _UNDEFINED_NAME.fullmatch(said)
            raise MissingVariable(
                f"template {name!r}: {said}", variable=named[1] if named else None
            ) from None
        except SecurityError as exc:
            raise TemplateError(f"template {name!r} refused: {exc}") from None
        except JinjaTemplateError as exc:
            raise TemplateError(f"template {name!r}: {exc.message}") from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise TemplateError(f"template {name!r}: {exc}") from None


# Parsing and compiling recurse over the source and evaluate literals: a source nested
# thousands deep, or a number literal of 5,000 digits, fails there, not in the render.
_COMPILE_FAILURES = (RecursionError, MemoryError, ValueError, SyntaxError, OverflowError)


def _why(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, MemoryError):
        return "too large to compile within TEMPLATE_RENDER_MEMORY_BYTES"
    return str(exc).split(";")[0] or type(exc).__name__


def _with_samples(exc: TemplateError, samples: dict[str, Any] | None) -> str:
    if samples is None:
        return exc.message
    return f"rendered with its sample_variables, {exc.message}"


def _constant(node: nodes.Node) -> object:
    return node.value if isinstance(node, nodes.Const) else None
