"""GET /queue/status and GET /health."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from odiseo.api.auth import ReadKey, Scope, requires
from odiseo.api.deps import HealthDep, MetricsDep, ServiceDep, SettingsDep
from odiseo.api.schemas import Health, Problem, QueueStatus
from odiseo.domain.models import Status
from odiseo.metrics import CONTENT_TYPE_LATEST

router = APIRouter()


@router.get(
    "/queue/status",
    response_model=QueueStatus,
    responses={503: {"model": Problem}},
    dependencies=[ReadKey],
)
async def queue_status(service: ServiceDep) -> QueueStatus:
    """How many messages are in each status, and how long the oldest due one has waited."""
    now = datetime.now(UTC)
    depth = await service.queue_depth(now=now)
    counts = depth.counts
    return QueueStatus(
        oldest_pending_seconds=round(depth.oldest_due_seconds, 3),
        pending=counts[Status.PENDING],
        scheduled=counts[Status.SCHEDULED],
        processing=counts[Status.PROCESSING],
        sent=counts[Status.SENT],
        failed=counts[Status.FAILED],
        cancelled=counts[Status.CANCELLED],
        suppressed=counts[Status.SUPPRESSED],
        timestamp=now,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(request: Request, service: ServiceDep, registry: MetricsDep) -> Response:
    """Prometheus metrics: delivery counters and latencies, queue depth by status, webhook
    deliveries by outcome and the age of the oldest pending one, the scopes throttled.

    Open, unless METRICS_REQUIRE_KEY asks for a key with the read scope.
    """
    if request.app.state.settings.metrics_require_key:
        await requires(Scope.READ)(request)
    gauges = await service.gauges(now=datetime.now(UTC))
    counts = {status.value: n for status, n in gauges.counts.items()}
    registry.observe_queue(counts, gauges.oldest_due_seconds)
    registry.webhook_oldest_pending.set(gauges.webhook_oldest_pending_seconds)
    registry.observe_throttles(gauges.throttled)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(checks: HealthDep, settings: SettingsDep) -> Health | JSONResponse:
    """200 while the store answers; 503 naming `db` when it does not.

    A failing email provider is reported (`degraded`) but does not fail the
    probe: mail is still accepted and will be delivered once it is back.
    """
    db = await checks.db()
    provider = await checks.email_provider()
    verdict = Health(
        status="ok" if db == "ok" and provider in {"ok", "unknown"} else "degraded",
        db=db,
        email_provider=provider,
        version=settings.service_version,
        timestamp=datetime.now(UTC),
    )
    if db != "ok":
        verdict.status = "error"
        verdict.detail = "db: the database is unreachable"
        return JSONResponse(verdict.model_dump(mode="json"), status_code=503)
    if provider == "unreachable":
        verdict.detail = f"email_provider: {checks.provider.name} is unreachable"
    return verdict
