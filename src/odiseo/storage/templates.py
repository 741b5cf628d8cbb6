"""Stored templates: one current row per id, and every version ever saved."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from odiseo.domain.models import StoredTemplate
from odiseo.storage.database import Database, Row
from odiseo.storage.tables import template_versions, templates


class TemplateStore:
    """Save, read, list and delete templates; a save bumps the version."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
        parts: dict[str, Any] = {
            "subject": subject,
            "html": html,
            "text": text,
            "sample_variables": sample_variables,
        }
        async with self.db.write() as tx:
            current = await tx.first(
                select(templates.c.version, templates.c.created_at)
                .where(templates.c.id == template_id)
                .with_for_update()
            )
            if current is None:
                # A deleted template keeps its history: carry on after its last version.
                last = await tx.scalar(
                    select(func.max(template_versions.c.version)).where(
                        template_versions.c.template_id == template_id
                    )
                )
                version, created = (last or 0) + 1, now
                row = {"id": template_id, "version": version, "created_at": now}
                await tx.run(templates.insert(), [{**row, "updated_at": now, **parts}])
            else:
                version, created = current["version"] + 1, current["created_at"]
                await tx.run(
                    update(templates)
                    .where(templates.c.id == template_id)
                    .values(version=version, updated_at=now, **parts)
                )
            versioned = {"template_id": template_id, "version": version, "created_at": now}
            await tx.run(template_versions.insert(), [{**versioned, **parts}])
        return StoredTemplate(
            id=template_id,
            created=current is None,
            version=version,
            created_at=created,
            updated_at=now,
            **parts,
        )

    async def get(self, template_id: str, version: int | None = None) -> StoredTemplate | None:
        """The current version, or a given one (also of a deleted template)."""
        async with self.db.read() as tx:
            if version is None:
                row = await tx.first(select(templates).where(templates.c.id == template_id))
                return None if row is None else _template(row, template_id)
            row = await tx.first(
                select(template_versions).where(
                    template_versions.c.template_id == template_id,
                    template_versions.c.version == version,
                )
            )
        return None if row is None else _template(row, template_id, updated_at=row["created_at"])

    async def list(self) -> list[StoredTemplate]:
        async with self.db.read() as tx:
            rows = await tx.rows(select(templates).order_by(templates.c.id))
        return [_template(row, row["id"]) for row in rows]

    async def delete(self, template_id: str) -> bool:
        """Remove the template; its versions stay, so past sends can still be explained."""
        async with self.db.write() as tx:
            return await tx.run(delete(templates).where(templates.c.id == template_id)) > 0


def _template(row: Row, template_id: str, *, updated_at: datetime | None = None) -> StoredTemplate:
    return StoredTemplate(
        id=template_id,
        version=row["version"],
        subject=row["subject"],
        html=row["html"],
        text=row["text"],
        sample_variables=row["sample_variables"],
        created_at=row["created_at"],
        updated_at=updated_at or row["updated_at"],
    )
