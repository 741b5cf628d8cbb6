"""Stored templates: one current row per id, and every version ever saved."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from odiseo.domain.models import StoredTemplate
from odiseo.storage.failures import translate_errors
from odiseo.storage.tables import template_versions, templates

Writer = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


class TemplateStore:
    """Save, read, list and delete templates; a save bumps the version."""

    def __init__(self, engine: AsyncEngine, write: Writer) -> None:
        self.engine = engine
        self._write = write

    async def put(
        self,
        template_id: str,
        *,
        subject: str | None,
        html: str,
        text: str | None,
        sample_variables: dict[str, Any] | None = None,
        now: datetime,
    ) -> StoredTemplate:
        """Create the template, or save a new version of it."""
        async with self._write() as conn:
            current = (
                await conn.execute(
                    select(templates.c.version, templates.c.created_at)
                    .where(templates.c.id == template_id)
                    .with_for_update()
                )
            ).first()
            parts: dict[str, Any] = {
                "subject": subject,
                "html": html,
                "text": text,
                "sample_variables": sample_variables,
            }
            if current is None:
                # A deleted template keeps its history: carry on after its last version.
                last = (
                    await conn.execute(
                        select(func.max(template_versions.c.version)).where(
                            template_versions.c.template_id == template_id
                        )
                    )
                ).scalar()
                version, created = (last or 0) + 1, now
                await conn.execute(
                    templates.insert().values(
                        id=template_id, version=version, created_at=now, updated_at=now, **parts
                    )
                )
            else:
                version, created = current.version + 1, current.created_at
                await conn.execute(
                    update(templates)
                    .where(templates.c.id == template_id)
                    .values(version=version, updated_at=now, **parts)
                )
            await conn.execute(
                template_versions.insert().values(
                    template_id=template_id, version=version, created_at=now, **parts
                )
            )
        return StoredTemplate(
            id=template_id,
            created=current is None,
            version=version,
            subject=subject,
            html=html,
            text=text,
            sample_variables=sample_variables,
            created_at=created,
            updated_at=now,
        )

    async def get(self, template_id: str, version: int | None = None) -> StoredTemplate | None:
        """The current version, or a given one (also of a deleted template)."""
        with translate_errors():
            async with self.engine.connect() as conn:
                if version is None:
                    row = (
                        await conn.execute(select(templates).where(templates.c.id == template_id))
                    ).first()
                    return None if row is None else _template(row, row.id)
                row = (
                    await conn.execute(
                        select(template_versions).where(
                            template_versions.c.template_id == template_id,
                            template_versions.c.version == version,
                        )
                    )
                ).first()
        if row is None:
            return None
        return _template(row, template_id, updated_at=row.created_at)

    async def list(self) -> list[StoredTemplate]:
        with translate_errors():
            async with self.engine.connect() as conn:
                rows = await conn.execute(select(templates).order_by(templates.c.id))
                return [_template(row, row.id) for row in rows]

    async def delete(self, template_id: str) -> bool:
        """Remove the template; its versions stay, so past sends can still be explained."""
        async with self._write() as conn:
            result = await conn.execute(delete(templates).where(templates.c.id == template_id))
        return bool(result.rowcount)


def _template(row: Any, template_id: str, *, updated_at: datetime | None = None) -> StoredTemplate:
    return StoredTemplate(
        id=template_id,
        version=row.version,
        subject=row.subject,
        html=row.html,
        text=row.text,
        sample_variables=row.sample_variables,
        created_at=row.created_at,
        updated_at=updated_at or row.updated_at,
    )


__all__ = ["TemplateStore"]
