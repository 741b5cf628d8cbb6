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
        subject = self._optional(f"{template_id}.subject.txt", variables)
        text = self._optional(f"{template_id}.txt", variables)
        return Rendered(
            subject=" ".join(subject.split()) if subject is not None else None,
            html=self._run(lambda: html.render(variables), template_id),
            text=text,
        )

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
