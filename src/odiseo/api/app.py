"""create_app(settings): the FastAPI application, its lifespan and its error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from odiseo import __version__, dashboard
from odiseo.api.audit import AuditLog
from odiseo.api.body import refuse_declared_bodies
from odiseo.api.health import HealthCheck
from odiseo.api.hosts import HostCheck, HostPolicy
from odiseo.api.limits import RequestSizeLimit
from odiseo.api.openapi import document_openapi
from odiseo.api.outcome_schemas import SuppressionIn
from odiseo.api.routes import (
    emails,
    inbound,
    outcomes,
    privacy,
    system,
    templates,
    unsubscribe,
    webhooks,
)
from odiseo.api.schemas import BatchIn, RenderIn
from odiseo.api.webhook_schemas import ReplayIn, WebhookIn, WebhookPatch
from odiseo.api.wiring import (
    build_bounce_service,
    build_housekeeper,
    build_operations,
    build_provider,
    build_service,
    build_store,
    build_webhook_service,
    build_webhook_worker,
    build_worker,
    unsubscribe_links,
)
from odiseo.config import Settings
from odiseo.errors import (
    Duplicate,
    InvalidEmail,
    InvalidReport,
    InvalidTransition,
    MissingVariable,
    NotFound,
    ReportRefused,
    StoreUnavailable,
    TemplateError,
    TemplateLimit,
    TooLarge,
    UnknownTemplate,
    WebhookRefused,
)
from odiseo.keys import KeyRing
from odiseo.metrics import Metrics
from odiseo.outcomes import OutcomeService
from odiseo.privacy import PrivacyService
from odiseo.requests import EmailIn, RescheduleIn, TemplateIn, describe_errors, error_list
from odiseo.template_service import TemplateService

if TYPE_CHECKING:
    from odiseo import smtp

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    with_worker: bool = False,
    with_smtp: bool = False,
    migrate: bool = True,
) -> FastAPI:
    """The API; with `with_worker`, a delivery worker runs in the same process, and with
    `with_smtp` the SMTP listeners the settings ask for (`odiseo run`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = build_store(settings)
        listeners: list[smtp.Listener] = []
        try:
            app.state.service = build_service(settings, store)
            if migrate:
                await store.migrate()
                await app.state.service.publish_settings(now=datetime.now(UTC))
            app.state.bounces = build_bounce_service(settings, store)
            if with_smtp:  # only `odiseo run` imports the SMTP listener (aiosmtpd)
                from odiseo import smtp

                if smtp.wanted(settings):
                    specs = smtp.listener_specs(
                        settings, service=app.state.service, keys=keys, bounces=app.state.bounces
                    )
                    listeners = await smtp.start_listeners(specs)
        except BaseException:
            await store.close()  # a start that fails leaves no connection behind
            raise
        app.state.settings = settings
        app.state.keys = keys
        app.state.metrics = Metrics()
        app.state.outcomes = OutcomeService(store)
        app.state.privacy = PrivacyService(store)
        app.state.unsubscribe = unsubscribe_links(settings)
        app.state.templates = TemplateService(
            templates=store.templates, renderer=app.state.service.renderer
        )
        app.state.health = HealthCheck(service=app.state.service, provider=build_provider(settings))
        app.state.webhooks = build_webhook_service(settings, store)
        app.state.operations = build_operations(settings, store)
        worker = build_worker(settings, store, app.state.metrics) if with_worker else None
        task = asyncio.create_task(worker.run(), name="worker") if worker else None
        hooks = build_webhook_worker(settings, store, worker) if worker else None
        hooks_task = asyncio.create_task(hooks.run(), name="webhooks") if hooks else None
        keeper = build_housekeeper(settings, store) if worker else None
        keeper_task = asyncio.create_task(keeper.run(), name="housekeeping") if keeper else None
        log.info("API ready on %s (store %r)", settings.api_port, store)
        try:
            yield
        finally:
            if listeners:
                from odiseo import smtp

                await smtp.close_listeners(listeners)
            if worker is not None and task is not None:
                worker.stop()
                await task
            if hooks is not None and hooks_task is not None:
                hooks.stop()
                await hooks_task
            if keeper is not None and keeper_task is not None:
                keeper.stop()
                await keeper_task
            await app.state.health.close()
            await app.state.health.provider.close()
            await app.state.service.renderer.close()
            await app.state.service.writer.close()
            await store.close()

    keys = KeyRing.from_sources(settings.api_keys.get_secret_value(), settings.api_keys_file)
    app = FastAPI(
        title="Odiseo",
        version=__version__,
        summary="Transactional email: durable queue, SMTP delivery, retries, status.",
        lifespan=lifespan,
        docs_url=None,  # served by dashboard.install_docs, from vendored assets
        redoc_url=None,
    )
    dashboard.install(app, enabled=settings.ui_enabled)
    app.add_middleware(AuditLog)
    app.add_middleware(RequestSizeLimit, max_bytes=settings.max_request_bytes)
    hosts = HostPolicy.from_settings(
        api_host=settings.api_host,
        allowed_hosts=settings.api_allowed_hosts,
        public_url=settings.public_url,
    )
    app.add_middleware(HostCheck, policy=hosts)  # the outermost: before anything else runs
    # POST /emails is served by a plain Starlette route ahead of its documented APIRoute.
    app.router.routes[:0] = emails.direct_routes
    app.include_router(emails.router)
    app.include_router(templates.router)
    app.include_router(system.router)
    app.include_router(outcomes.router)
    app.include_router(unsubscribe.router)
    app.include_router(privacy.router)
    app.include_router(webhooks.router)
    app.include_router(inbound.router)
    _install_error_handlers(app)
    refuse_declared_bodies(app)
    document_openapi(
        app,
        models=(
            EmailIn,
            BatchIn,
            TemplateIn,
            RenderIn,
            RescheduleIn,
            WebhookIn,
            WebhookPatch,
            ReplayIn,
            SuppressionIn,
        ),
        routers=(emails.router, templates.router, system.router, outcomes.router, webhooks.router),
    )
    return app


def _problem(code: int, detail: str, **extra: Any) -> JSONResponse:
    if code < 500:  # with API_ACCESS_LOG off, this is where a refused request is seen
        log.info("refused with %d: %s", code, detail)
    return JSONResponse({"detail": detail, **extra}, status_code=code)


def _template_problem(error: TemplateError, *, path: str) -> dict[str, Any]:
    """The `errors` entry of a template failure: where in the request it points, and why."""
    on_templates = path.startswith("/templates/")
    loc = ["path", "template_id"] if on_templates else ["body", "template_id"]
    kind = "template_invalid"
    if isinstance(error, MissingVariable):
        field = "template_vars"
        if on_templates:
            field = "variables" if path.endswith("/render") else "sample_variables"
        loc = ["body", field, *([error.variable] if error.variable else [])]
        kind = "template_variable_missing"
    elif isinstance(error, UnknownTemplate):
        kind = "template_unknown"
    elif isinstance(error, TemplateLimit):
        kind = "template_limit"
    return {"loc": loc, "msg": error.message, "type": kind}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        summary = describe_errors(errors, skip_first=True)
        return _problem(422, summary, errors=error_list(errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _problem(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(ClientDisconnect)
    async def gone(_: Request, exc: ClientDisconnect) -> Response:
        # The client left (or api/server.py closed it for being late) before its body came.
        log.info("client disconnected before its request body arrived")
        return Response(status_code=400)  # goes nowhere: the connection is closed

    @app.exception_handler(InvalidEmail)
    async def invalid_email(_: Request, exc: InvalidEmail) -> JSONResponse:
        return _problem(422, exc.message)

    @app.exception_handler(TemplateError)
    async def template_error(request: Request, exc: TemplateError) -> JSONResponse:
        errors = [_template_problem(exc, path=request.url.path)]
        return _problem(422, f"template: {exc.message}", errors=errors)

    @app.exception_handler(WebhookRefused)
    async def webhook_refused(_: Request, exc: WebhookRefused) -> JSONResponse:
        return _problem(422, exc.message)

    @app.exception_handler(ReportRefused)
    async def report_refused(_: Request, exc: ReportRefused) -> JSONResponse:
        return _problem(401, exc.message)

    @app.exception_handler(InvalidReport)
    async def invalid_report(_: Request, exc: InvalidReport) -> JSONResponse:
        return _problem(422, exc.message)

    @app.exception_handler(TooLarge)
    async def too_large(_: Request, exc: TooLarge) -> JSONResponse:
        return _problem(413, exc.message)

    @app.exception_handler(Duplicate)
    async def duplicate(_: Request, exc: Duplicate) -> JSONResponse:
        detail = "client_message_id is already used by a different email"
        if not exc.message_id:  # held in another scope, before c001 (contract): not said
            return _problem(status.HTTP_409_CONFLICT, detail)
        return _problem(status.HTTP_409_CONFLICT, detail, message_id=exc.message_id)

    @app.exception_handler(InvalidTransition)
    async def conflict(_: Request, exc: InvalidTransition) -> JSONResponse:
        return _problem(status.HTTP_409_CONFLICT, exc.message)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _problem(status.HTTP_404_NOT_FOUND, exc.message)

    @app.exception_handler(StoreUnavailable)
    async def unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("request refused: %s", exc)
        response = _problem(
            status.HTTP_503_SERVICE_UNAVAILABLE, "database unavailable; nothing was stored, retry"
        )
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error: %s", type(exc).__name__, exc_info=exc)
        return _problem(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error")
