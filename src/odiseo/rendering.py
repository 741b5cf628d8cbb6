"""Jinja2 templates: sandboxed, HTML autoescaped, undefined variables are errors.

A template `NAME` is `NAME.html` in TEMPLATES_DIR (or among the templates
shipped with Odiseo), with optional `NAME.subject.txt` and `NAME.txt` beside it
for the subject line and the plain-text part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from odiseo.errors import TemplateError, UnknownTemplate

TEMPLATE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True, kw_only=True)
class Rendered:
    """The parts a template produced; subject and text are None when it has none."""

    subject: str | None
    html: str
    text: str | None


class Renderer:
    """Renders stored file templates by id."""

    def __init__(self, templates_dir: Path | None) -> None:
        loaders: list[Any] = []
        if templates_dir is not None:
            loaders.append(FileSystemLoader(str(templates_dir)))
        loaders.append(PackageLoader("odiseo", "templates"))
        self._html = ImmutableSandboxedEnvironment(
            loader=ChoiceLoader(loaders), autoescape=True, undefined=StrictUndefined
        )
        self._plain = ImmutableSandboxedEnvironment(
            loader=ChoiceLoader(loaders), autoescape=False, undefined=StrictUndefined
        )

    def render(self, template_id: str, variables: dict[str, Any]) -> Rendered:
        """Render the template's parts with `variables`.

        Raises:
            UnknownTemplate: no template of that id.
            TemplateError: a syntax error, an undefined variable or a sandbox refusal.
        """
        if not TEMPLATE_ID.match(template_id) or ".." in template_id:
            raise UnknownTemplate(f"unknown template: {template_id!r}")
        try:
            html = self._html.get_template(f"{template_id}.html")
        except TemplateNotFound:
            raise UnknownTemplate(f"unknown template: {template_id!r}") from None
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template {template_id!r} is invalid: {exc.message}") from None
        try:
            source: str | None = self._plain.loader.get_source(  # type: ignore[union-attr]
                self._plain, f"{template_id}.subject.txt"
            )[0]
        except TemplateNotFound:
            source = None
        text = self._optional(f"{template_id}.txt", variables)
        return Rendered(
            subject=self._subject(source, template_id, variables),
            html=self._run(lambda: html.render(variables), template_id),
            text=text,
        )

    def _subject(self, source: str | None, name: str, variables: dict[str, Any]) -> str | None:
        """The subject line: the template's own line breaks are folded away before rendering,
        so a line break left afterwards came from a variable, and is refused."""
        if source is None:
            return None
        folded = " ".join(source.split())
        rendered = self._from_string(self._plain, folded, name, variables) or ""
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
        rendered_subject = self._subject(subject, template_id, variables)
        rendered_text = self._from_string(self._plain, text, template_id, variables)
        rendered_html = self._from_string(self._html, html, template_id, variables)
        return Rendered(
            subject=rendered_subject,
            html=rendered_html or "",
            text=rendered_text,
        )

    def check_source(self, template_id: str, *parts: str | None) -> None:
        """Refuse, before saving, a template that does not parse or reaches for internals.

        The sandbox would stop `{{ x.__class__ }}` at render time anyway; refusing it at
        save time means a bad template never reaches the store.
        """
        if not TEMPLATE_ID.match(template_id) or ".." in template_id:
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
        environment: ImmutableSandboxedEnvironment,
        source: str | None,
        name: str,
        variables: dict[str, Any],
    ) -> str | None:
        if source is None:
            return None
        try:
            template = environment.from_string(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template {name!r} is invalid: {exc.message}") from None
        return self._run(lambda: template.render(variables), name)

    def _optional(self, name: str, variables: dict[str, Any]) -> str | None:
        try:
            template = self._plain.get_template(name)
        except TemplateNotFound:
            return None
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template {name!r} is invalid: {exc.message}") from None
        return self._run(lambda: template.render(variables), name)

    @staticmethod
    def _run(render: Any, name: str) -> str:
        try:
            return str(render())
        except UndefinedError as exc:
            raise TemplateError(f"template {name!r}: {exc.message}") from None
        except SecurityError as exc:
            raise TemplateError(f"template {name!r} refused: {exc}") from None
        except JinjaTemplateError as exc:
            raise TemplateError(f"template {name!r}: {exc.message}") from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise TemplateError(f"template {name!r}: {exc}") from None


def _constant(node: nodes.Node) -> object:
    return node.value if isinstance(node, nodes.Const) else None
