"""Templates: the stored and file templates, editing with a live preview from sample
variables, and each stored template's versions with a diff between them.

A save goes through TemplateService.save as PUT /templates/{id} does, validated by
the same model (requests.TemplateIn). The preview renders the form's source in the
render processes and is served sandboxed, like a message's HTML.
"""

from __future__ import annotations

import difflib
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from odiseo.dashboard.sessions import ActionDep, FormDep, ViewerDep
from odiseo.dashboard.web import PREFIX, SANDBOX, page
from odiseo.domain.models import StoredTemplate
from odiseo.errors import NotFound, OdiseoError
from odiseo.rendering import TEMPLATE_ID
from odiseo.requests import TemplateIn, describe_errors
from odiseo.template_service import TemplateService

router = APIRouter(prefix=PREFIX, include_in_schema=False)
TemplateId = Annotated[str, Path(pattern=TEMPLATE_ID.pattern, max_length=128)]


def _templates(request: Request) -> TemplateService:
    service: TemplateService = request.app.state.templates
    return service


@router.get("/templates")
async def templates_page(request: Request, viewer: ViewerDep) -> Response:
    found = await _templates(request).list()
    return page(
        request,
        "templates.html",
        section="templates",
        stored=[t for t in found if isinstance(t, StoredTemplate)],
        files=[t.id for t in found if not isinstance(t, StoredTemplate)],
    )


@router.get("/templates/new")
async def new_template(request: Request, viewer: ViewerDep, id: str = "") -> Response:
    """The "new template" form's GET: to the editor of that id (422 for a bad id)."""
    if not TEMPLATE_ID.fullmatch(id) or len(id) > 128:
        return Response("a template id is letters, digits, _ - and .", status_code=422)
    return RedirectResponse(f"{PREFIX}/templates/{id}", status_code=303)


@router.get("/templates/{template_id}")
async def template_page(
    template_id: TemplateId,
    request: Request,
    viewer: ViewerDep,
    version: int | None = None,
    saved: int | None = None,
) -> Response:
    service = _templates(request)
    try:
        versions = await service.versions(template_id)
    except NotFound:
        versions = []  # a new template, or a file one: edited into a stored one
    shown = next((v for v in versions if v.version == version), versions[0] if versions else None)
    return _editor(request, template_id, versions=versions, shown=shown, saved=saved)


def _editor(
    request: Request,
    template_id: str,
    *,
    versions: list[StoredTemplate],
    shown: StoredTemplate | None,
    form: dict[str, str] | None = None,
    error: str | None = None,
    saved: int | None = None,
    status_code: int = 200,
) -> Response:
    if form is None:
        samples = shown.sample_variables if shown and shown.sample_variables else {}
        form = {
            "subject": shown.subject or "" if shown else "",
            "html": shown.html if shown else "",
            "text": shown.text or "" if shown else "",
            "sample_variables": json.dumps(samples, indent=2, ensure_ascii=False),
        }
    return page(
        request,
        "template.html",
        status_code=status_code,
        section="templates",
        template_id=template_id,
        versions=versions,
        shown=shown,
        diff=_diff(versions, shown),
        form=form,
        error=error,
        saved=saved,
    )


def _diff(versions: list[StoredTemplate], shown: StoredTemplate | None) -> list[str]:
    """The shown version against the one before it, as unified diff lines."""
    if shown is None:
        return []
    before = next((v for v in versions if v.version < shown.version), None)
    if before is None:
        return []

    def lines(t: StoredTemplate) -> list[str]:
        return [f"subject: {t.subject or ''}", *t.html.splitlines(), "-- text --",
                *(t.text or "").splitlines()]  # fmt: skip

    return list(
        difflib.unified_diff(
            lines(before),
            lines(shown),
            f"version {before.version}",
            f"version {shown.version}",
            lineterm="",
        )
    )


def _parse(form: dict[str, str]) -> TemplateIn:
    """The form as the API's TemplateIn (ValueError with the API's wording)."""
    try:
        samples: Any = json.loads(form.get("sample_variables") or "{}")
    except ValueError:
        raise ValueError("sample_variables: not JSON") from None
    try:
        return TemplateIn.model_validate(
            {
                "subject": form.get("subject") or None,
                "html": form.get("html", ""),
                "text": form.get("text") or None,
                "sample_variables": samples or None,
            }
        )
    except ValidationError as exc:
        raise ValueError(describe_errors(exc.errors())) from None


@router.post("/templates/{template_id}")
async def save_template(template_id: TemplateId, request: Request, action: ActionDep) -> Response:
    service = _templates(request)
    try:
        body = _parse(action.form)
        saved = await service.save(
            template_id,
            subject=body.subject,
            html=body.html,
            text=body.text,
            sample_variables=body.sample_variables,
            now=datetime.now(UTC),
        )
    except (ValueError, OdiseoError) as exc:
        try:
            versions = await service.versions(template_id)
        except NotFound:
            versions = []
        message = exc.message if isinstance(exc, OdiseoError) else str(exc)
        return _editor(
            request,
            template_id,
            versions=versions,
            shown=versions[0] if versions else None,
            form=action.form,
            error=message,
            status_code=422,
        )
    target = f"{PREFIX}/templates/{template_id}?saved={saved.version}"
    return RedirectResponse(target, status_code=303)


@router.post("/templates/{template_id}/preview")
async def preview(template_id: TemplateId, request: Request, action: FormDep) -> Response:
    """The form's source rendered with its sample variables, shown in the preview frame."""
    try:
        body = _parse(action.form)
        rendered = await _templates(request).preview_source(
            template_id,
            subject=body.subject,
            html=body.html,
            text=body.text,
            variables=body.sample_variables or {},
        )
        html = rendered.html
    except (ValueError, OdiseoError) as exc:
        message = exc.message if isinstance(exc, OdiseoError) else str(exc)
        return Response(
            f"Cannot preview: {message}",
            status_code=422,
            media_type="text/plain",
            headers={"Content-Security-Policy": SANDBOX},
        )
    return Response(html, media_type="text/html", headers={"Content-Security-Policy": SANDBOX})
