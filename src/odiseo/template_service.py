"""Use cases of stored templates: save (checked first), read, list, delete, preview."""

from __future__ import annotations

import builtins
import dataclasses
import logging
from datetime import datetime
from typing import Any

from odiseo.domain.models import FileTemplate, StoredTemplate
from odiseo.errors import NotFound, UnknownTemplate
from odiseo.render_process import ProcessRenderer
from odiseo.rendering import Rendered
from odiseo.storage.contract import Templates

log = logging.getLogger(__name__)


class TemplateService:
    """Stored templates win over files of the same name in TEMPLATES_DIR."""

    def __init__(self, *, templates: Templates, renderer: ProcessRenderer) -> None:
        self.templates = templates
        self.renderer = renderer

    async def save(
        self,
        template_id: str,
        *,
        subject: str | None,
        html: str,
        text: str | None,
        sample_variables: dict[str, Any] | None = None,
        now: datetime,
    ) -> StoredTemplate:
        """Check (rendering it with its sample values), then store a new version.

        Raises:
            TemplateLimit: a render went over a limit; TemplateError: any other fault.
        """
        await self.renderer.check(
            template_id, subject=subject, html=html, text=text, sample_variables=sample_variables
        )
        saved = await self.templates.put(
            template_id,
            subject=subject,
            html=html,
            text=text,
            sample_variables=sample_variables,
            now=now,
        )
        log.info("template %s saved as version %d", template_id, saved.version)
        return saved

    async def get(
        self, template_id: str, version: int | None = None
    ) -> StoredTemplate | FileTemplate:
        """The stored template (or one of its versions), else the file template of that id."""
        found = await self.templates.get(template_id, version)
        if found is not None:
            return (await _described(self.renderer, [found], files=False))[0]
        if version is None:
            for template in await _described(self.renderer, [], files=True):
                if template.id == template_id:
                    return template
        which = f" version {version}" if version is not None else ""
        raise NotFound(f"no template {template_id!r}{which}")

    async def list(self) -> list[StoredTemplate | FileTemplate]:
        """Stored templates, then the file templates no stored one hides, each by id."""
        return await _described(self.renderer, await self.templates.list(), files=True)

    async def delete(self, template_id: str) -> None:
        if not await self.templates.delete(template_id):
            raise NotFound(f"no stored template {template_id!r}")
        log.info("template %s deleted", template_id)

    async def preview(self, template_id: str, variables: dict[str, Any]) -> Rendered:
        """Render as a send would: the stored template, else the file; raises NotFound.

        The text part is always there: derived from the HTML (in the render process,
        within its deadline) when the template has none.
        """
        stored = await self.templates.get(template_id)
        if stored is not None:
            return await self.renderer.render_source(
                stored.id,
                subject=stored.subject,
                html=stored.html,
                text=stored.text,
                variables=variables,
                derive_text=True,
            )
        try:
            return await self.renderer.render(template_id, variables, derive_text=True)
        except UnknownTemplate:
            raise NotFound(f"no template {template_id!r}") from None

    async def versions(self, template_id: str, *, last: int = 20) -> builtins.list[StoredTemplate]:
        """The newest `last` versions of a stored template, newest first; raises NotFound."""
        current = await self.templates.get(template_id)
        if current is None:
            raise NotFound(f"no stored template {template_id!r}")
        older = [
            await self.templates.get(template_id, version)
            for version in range(current.version - 1, max(0, current.version - last), -1)
        ]
        return [current, *(found for found in older if found is not None)]

    async def preview_source(
        self,
        template_id: str,
        *,
        subject: str | None,
        html: str,
        text: str | None,
        variables: dict[str, Any],
    ) -> Rendered:
        """Render source not yet saved as a send would (the dashboard's live preview)."""
        return await self.renderer.render_source(
            template_id,
            subject=subject,
            html=html,
            text=text,
            variables=variables,
            derive_text=True,
        )


async def _described(
    renderer: ProcessRenderer, stored: list[StoredTemplate], *, files: bool
) -> list[StoredTemplate | FileTemplate]:
    """Stored templates with their variables, and (with `files`) the file templates no
    stored one hides; by id. Parsed in a render process, as renders are."""
    sources = [(t.subject, t.html, t.text) for t in stored]
    variables, on_disk = await renderer.describe(sources, files=files)
    found: list[StoredTemplate | FileTemplate] = [
        dataclasses.replace(t, variables=tuple(needed), optional_variables=tuple(optional))
        for t, (needed, optional) in zip(stored, variables, strict=True)
    ]
    taken = {t.id for t in stored}
    for f in on_disk:
        if f["id"] not in taken:
            found.append(
                FileTemplate(
                    **{
                        **f,
                        "variables": tuple(f["variables"]),
                        "optional_variables": tuple(f["optional_variables"]),
                    }
                )
            )
    return sorted(found, key=lambda t: t.id)
