"""Annotated dependencies the route handlers ask for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from odiseo.api.health import HealthCheck
from odiseo.config import Settings
from odiseo.metrics import Metrics
from odiseo.service import EmailService
from odiseo.template_service import TemplateService
from odiseo.webhooks.service import WebhookService


async def _service(request: Request) -> EmailService:
    service: EmailService = request.app.state.service
    return service


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _health(request: Request) -> HealthCheck:
    health: HealthCheck = request.app.state.health
    return health


async def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[Metrics, Depends(_metrics)]


async def _templates(request: Request) -> TemplateService:
    templates: TemplateService = request.app.state.templates
    return templates


TemplatesDep = Annotated[TemplateService, Depends(_templates)]
ServiceDep = Annotated[EmailService, Depends(_service)]
SettingsDep = Annotated[Settings, Depends(_settings)]
HealthDep = Annotated[HealthCheck, Depends(_health)]


async def _webhooks(request: Request) -> WebhookService:
    webhooks: WebhookService = request.app.state.webhooks
    return webhooks


WebhooksDep = Annotated[WebhookService, Depends(_webhooks)]
