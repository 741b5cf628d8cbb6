"""Stored templates: /templates and /templates/{template_id}[/render]."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from odiseo.api.auth import AdminKey, ReadKey
from odiseo.api.body import parse_json
from odiseo.api.deps import TemplatesDep
from odiseo.api.openapi import request_body
from odiseo.api.schemas import Problem, RenderIn, RenderOut, TemplateOut
from odiseo.rendering import TEMPLATE_ID_PATTERN
from odiseo.requests import TemplateIn

router = APIRouter(prefix="/templates", tags=["templates"])

TemplateId = Annotated[
    str, Path(pattern=TEMPLATE_ID_PATTERN, max_length=128, description="letters, digits, _-.")
]
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": Problem}, 422: {"model": Problem}}
# templates.version is a 32-bit INTEGER column on PostgreSQL: a larger number is no version.
VERSION_MAX = 2**31 - 1


@router.get("", response_model=list[TemplateOut], dependencies=[ReadKey])
async def list_templates(templates: TemplatesDep) -> list[TemplateOut]:
    """Every template: stored ones at their current version, and the file templates
    (TEMPLATES_DIR, the shipped `welcome`) no stored one hides, marked `"source": "file"`;
    each with the `variables` it reads."""
    return [TemplateOut.model_validate(t) for t in await templates.list()]


@router.put(
    "/{template_id}",
    response_model=TemplateOut,
    responses=ERRORS,
    dependencies=[AdminKey],
    openapi_extra=request_body(TemplateIn),
)
async def put_template(
    template_id: TemplateId, request: Request, templates: TemplatesDep, response: Response
) -> TemplateOut:
    """Create the template (201) or save a new version of it (200).

    The template is rendered first, with `sample_variables` when given: a render that
    goes over a limit (time, memory, size, work) refuses the save with a 422 naming it.
    """
    body = await parse_json(request, TemplateIn)  # after the key: see api/body.py
    saved = await templates.save(
        template_id,
        subject=body.subject,
        html=body.html,
        text=body.text,
        sample_variables=body.sample_variables,
        now=datetime.now(UTC),
    )
    if saved.created:
        response.status_code = status.HTTP_201_CREATED
    return TemplateOut.model_validate(saved)


@router.get("/{template_id}", response_model=TemplateOut, responses=ERRORS, dependencies=[ReadKey])
async def get_template(
    template_id: TemplateId,
    templates: TemplatesDep,
    version: Annotated[int | None, Query(ge=1, le=VERSION_MAX)] = None,
) -> TemplateOut:
    """The current version, or `?version=N` (kept even after a delete); else the file
    template of that id."""
    return TemplateOut.model_validate(await templates.get(template_id, version))


@router.delete(
    "/{template_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"model": Problem}, 422: {"model": Problem}},
    dependencies=[AdminKey],
)
async def delete_template(template_id: TemplateId, templates: TemplatesDep) -> Response:
    """Delete the template; messages already sent with it keep their version number."""
    await templates.delete(template_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{template_id}/render",
    response_model=RenderOut,
    responses=ERRORS,
    dependencies=[ReadKey],
    openapi_extra=request_body(RenderIn),
)
async def render_template(
    template_id: TemplateId, request: Request, templates: TemplatesDep
) -> RenderOut:
    """Preview what a send with these variables would produce (stored template, else file)."""
    body = await parse_json(request, RenderIn)  # after the key: see api/body.py
    rendered = await templates.preview(template_id, body.variables)
    return RenderOut(
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text or "",
    )
