"""The overview: the queue by status, activity charts, failures, workers, webhooks.

`/ui/` is the page; `/ui/overview/live` is its body alone, which htmx fetches every
few seconds to refresh it in place.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from odiseo.dashboard.charts import chart
from odiseo.dashboard.sessions import ViewerDep
from odiseo.dashboard.web import PREFIX, page
from odiseo.operations import OperationsService
from odiseo.webhooks.service import WebhookService

router = APIRouter(prefix=PREFIX, include_in_schema=False)


async def _context(request: Request) -> dict[str, Any]:
    now = datetime.now(UTC)
    webhooks: WebhookService = request.app.state.webhooks
    operations: OperationsService = request.app.state.operations
    endpoints, wait = await asyncio.gather(
        webhooks.endpoints(), webhooks.oldest_pending_seconds(now=now)
    )
    overview = await operations.overview(now=now, endpoints=endpoints, webhook_wait=wait)
    lease = timedelta(seconds=request.app.state.settings.email_worker_lease_seconds)
    return {
        "overview": overview,
        "hour_chart": chart(overview.last_hour, label_format="%H:%M"),
        "day_chart": chart(overview.last_day, label_format="%d %b %H:00"),
        "alive_after": now - lease,
    }


@router.get("/")
async def overview_page(request: Request, viewer: ViewerDep) -> Response:
    return page(request, "overview.html", **await _context(request), section="overview")


@router.get("/overview/live")
async def overview_live(request: Request, viewer: ViewerDep) -> Response:
    return page(request, "_overview_body.html", **await _context(request))
