"""Build the concrete store, provider, service and worker from the settings.

With cli.py, the only place that names concrete engines. What only some settings
need (DKIM's signer and OpenSSL, httpx for SNS) is imported when they ask for it, so a
process that does not use it does not carry it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from odiseo.bounce_service import BounceService, RelayChecks
from odiseo.config import Settings
from odiseo.domain.bounces import Notice, NoticeKind, Returned
from odiseo.domain.limits import RateLimit, domain_limits, relay_limits
from odiseo.domain.throttle import Policy
from odiseo.domain.verp import ReturnPaths
from odiseo.errors import ConfigError, InvalidEmail, ReportRefused
from odiseo.housekeeping import Housekeeper
from odiseo.inbound.relays import sendgrid, ses
from odiseo.metrics import Metrics
from odiseo.mime import ascii_address, check_address, check_value, is_special_use
from odiseo.operations import OperationsService
from odiseo.providers.base import Provider
from odiseo.providers.outbox import OutboxProvider
from odiseo.providers.simulator import Complain, Routed, SimulatorProvider
from odiseo.providers.smtp import SmtpProvider
from odiseo.render_process import ProcessRenderer
from odiseo.service import EmailService, Sender
from odiseo.storage.contract import Store
from odiseo.storage.engines import open_store
from odiseo.unsubscribe import UnsubscribeLinks, links_from
from odiseo.webhooks.sender import WebhookOptions, WebhookWorker
from odiseo.webhooks.service import WebhookService
from odiseo.worker import Worker, WorkerOptions, utcnow

if TYPE_CHECKING:
    from odiseo.dkim_signing import DkimSigner

log = logging.getLogger(__name__)


def build_store(settings: Settings) -> Store:
    return open_store(settings.database_url, schema=settings.schema_name)


async def migrate(settings: Settings, store: Store, *, contract: bool = False) -> list[str]:
    """Create or upgrade the schema, then publish the rules the SQL function enqueue()
    applies (senders, sizes, retries), so the database and this service agree; returns
    the contract revisions still pending (storage/migrate.py)."""
    pending = await store.migrate(contract=contract)
    service = build_service(settings, store)
    try:
        await service.publish_settings(now=utcnow())
    finally:
        await service.renderer.close()
    return pending


def build_provider(settings: Settings, *, complain: Complain | None = None) -> Provider:
    """The provider of EMAIL_PROVIDER (SIMULATOR_DOMAIN routes some recipients to the
    simulator); `complain` publishes the simulator's complaints."""
    simulator = SimulatorProvider(slow_seconds=settings.simulator_slow_seconds, complain=complain)
    if settings.provider == "simulator":
        return simulator
    primary = _primary_provider(settings)
    if settings.simulator_domain:
        return Routed(primary, simulator, domain=settings.simulator_domain)
    return primary


def simulated_complaints(store: Store) -> Complain:
    """The simulator's complaint@ recipients: an email.complained event (no suppression)."""

    async def complain(message_id: str, recipient: str) -> None:
        notice = Notice(
            kind=NoticeKind.COMPLAINED, recipient=recipient, source="simulator", suppress=False
        )
        returned = Returned(notices=(notice,), message_id=message_id)
        await store.outcomes.record_returned(returned, now=utcnow())

    return complain


def _primary_provider(settings: Settings) -> Provider:
    if settings.provider == "outbox":
        return OutboxProvider(settings.outbox_dir)
    if not settings.smtp_tls_verify:
        log.warning("SMTP_TLS_VERIFY=false: the SMTP server's certificate is NOT verified")
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpProvider(
        host=settings.smtp_host,
        port=settings.smtp_port,
        use_tls=settings.smtp_use_tls,
        username=settings.smtp_user,
        password=password,
        timeout=settings.smtp_timeout_seconds,
        ca_file=settings.smtp_tls_ca_file,
        verify=settings.smtp_tls_verify,
        pool_size=settings.smtp_pool_size,
    )


def build_renderer(settings: Settings) -> ProcessRenderer:
    return ProcessRenderer(
        settings.templates_dir,
        timeout=settings.template_render_timeout_seconds,
        memory_bytes=settings.template_render_memory_bytes,
        max_rendered_bytes=settings.max_rendered_bytes,
        processes=settings.template_render_processes,
    )


def build_service(settings: Settings, store: Store) -> EmailService:
    return EmailService(
        store=store,
        renderer=build_renderer(settings),
        sender=Sender(
            email=_sender_address(settings),
            name=settings.smtp_from_name or None,
            allowed=frozenset(_ascii_entry(entry) for entry in settings.sender_allow_list),
            refuse_special_use=settings.refuse_special_use_domains,
        ),
        max_retries=settings.email_retry_max_attempts,
        max_message_bytes=settings.max_message_bytes,
        unsubscribe=unsubscribe_links(settings),
    )


def unsubscribe_links(settings: Settings) -> UnsubscribeLinks | None:
    secret = settings.unsubscribe_secret
    return links_from(
        public_url=settings.public_url,
        secret=secret.get_secret_value() if secret else None,
        days=settings.unsubscribe_link_days,
        tags=settings.unsubscribe_tag_set,
    )


def build_signer(settings: Settings) -> DkimSigner | None:
    """The DKIM signer when DKIM_* are set; a bad key stops the process at start."""
    if settings.dkim_domain is None or settings.dkim_selector is None:
        return None
    assert settings.dkim_private_key is not None
    from odiseo.dkim_signing import DkimSigner

    return DkimSigner.from_settings(
        domain=settings.dkim_domain,
        selector=settings.dkim_selector,
        key=settings.dkim_private_key.get_secret_value(),
    )


def _sender_address(settings: Settings) -> str:
    """SMTP_FROM_EMAIL as messages carry it; a sender no message could use stops the start."""
    try:
        address = ascii_address(settings.smtp_from_email.strip())
        check_address("SMTP_FROM_EMAIL", address)
        check_value("SMTP_FROM_NAME", settings.smtp_from_name)
    except (ValueError, InvalidEmail) as exc:
        raise ConfigError(str(exc) if isinstance(exc, ValueError) else exc.message) from None
    if settings.refuse_special_use_domains and is_special_use(address):
        raise ConfigError(
            f"SMTP_FROM_EMAIL: {address} is at a special-use or reserved domain name, "
            "which REFUSE_SPECIAL_USE_DOMAINS refuses"
        )
    return address


def _ascii_entry(entry: str) -> str:
    """An ALLOWED_SENDERS entry in the xn-- form request addresses are compared in."""
    try:
        if entry.startswith("@"):
            return ascii_address("x" + entry)[1:]
        return ascii_address(entry)
    except ValueError as exc:
        raise ConfigError(f"ALLOWED_SENDERS: {entry}: {exc}") from None


def build_worker(settings: Settings, store: Store, metrics: Metrics | None = None) -> Worker:
    signer = build_signer(settings)
    return Worker(
        metrics=metrics,
        sign=signer.sign_off_loop if signer is not None else None,
        store=store,
        provider=build_provider(settings, complain=simulated_complaints(store)),
        options=WorkerOptions(
            batch_size=settings.email_worker_batch_size,
            lease_seconds=settings.email_worker_lease_seconds,
            poll_interval=settings.email_worker_poll_interval,
            backoff_seconds=settings.email_retry_backoff_seconds,
            shutdown_seconds=settings.email_worker_shutdown_seconds,
            store_retry_seconds=settings.email_worker_db_retry_seconds,
            concurrency=settings.smtp_pool_size,
            redact_after_send=settings.redact_after_send,
            domain_limits=domain_limits(settings.domain_limits),
            throttle=Policy(
                pause_seconds=settings.throttle_pause_seconds,
                max_pause_seconds=settings.throttle_max_pause_seconds,
            )
            if settings.throttle_pause_seconds > 0
            else None,
            limits=_relay_limits(settings),
        ),
        return_paths=build_return_paths(settings),
    )


def build_operations(settings: Settings, store: Store) -> OperationsService:
    """The dashboard's operations, told the sending limits its overview shows."""
    limits = (*_relay_limits(settings), *domain_limits(settings.domain_limits))
    return OperationsService(store, limits=limits)


def _relay_limits(settings: Settings) -> tuple[RateLimit, ...]:
    return relay_limits(
        per_second=settings.smtp_max_per_second,
        per_minute=settings.smtp_max_per_minute,
        per_day=settings.smtp_max_per_day,
    )


def build_housekeeper(settings: Settings, store: Store) -> Housekeeper | None:
    """The purge of RETENTION_DAYS beside a worker, or None when retention is off."""
    if settings.retention_days is None:
        return None
    return Housekeeper(retention=store.retention, days=settings.retention_days, clock=utcnow)


def build_return_paths(settings: Settings) -> ReturnPaths | None:
    """The VERP return paths when BOUNCE_DOMAIN is set (with BOUNCE_SECRET, as checked)."""
    if settings.bounce_domain is None or settings.bounce_secret is None:
        return None
    secret = settings.bounce_secret.get_secret_value().encode()
    return ReturnPaths(domain=settings.bounce_domain, secret=secret)


def build_bounce_service(
    settings: Settings, store: Store, *, fetch: ses.Fetch | None = None
) -> BounceService:
    """Bounces and relay reports; `fetch` GETs SNS's certificates and subscription URLs."""
    postmark = settings.postmark_webhook_token
    mailgun = settings.mailgun_webhook_signing_key
    key = settings.sendgrid_webhook_public_key
    topics = settings.ses_topics
    relays = RelayChecks(
        ses=ses.SnsVerifier(topics=topics, fetch=fetch or fetch_sns) if topics else None,
        sendgrid_key=sendgrid.public_key(key) if key else None,
        postmark_token=postmark.get_secret_value().encode() if postmark else None,
        mailgun_key=mailgun.get_secret_value().encode() if mailgun else None,
    )
    return BounceService(store, return_paths=build_return_paths(settings), relays=relays)


_SNS_MAX_BYTES = 64 * 1024


async def fetch_sns(url: str) -> bytes:
    """GET an SNS URL (already checked to be https on an SNS host): a signing certificate
    or a subscription confirmation. No redirects; ReportRefused if it fails."""
    import httpx

    try:
        async with (
            httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client,
            client.stream("GET", url) as response,
        ):
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _SNS_MAX_BYTES:
                    raise ReportRefused("Amazon SNS answered with too much")
    except httpx.HTTPError as exc:
        raise ReportRefused(f"cannot reach Amazon SNS: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise ReportRefused(f"Amazon SNS answered {response.status_code}")
    return body


def build_webhook_service(settings: Settings, store: Store) -> WebhookService:
    return WebhookService(store=store.webhooks, allow_private=settings.webhook_allow_private)


def build_webhook_worker(settings: Settings, store: Store, worker: Worker) -> WebhookWorker:
    """The webhook tasks that run beside `worker` (its name, its metrics)."""
    if settings.webhook_allow_private:
        log.warning("WEBHOOK_ALLOW_PRIVATE=true: webhooks may reach private addresses over http")
    return WebhookWorker(
        store=store.webhooks,
        name=worker.name,
        clock=utcnow,
        metrics=worker.metrics,
        options=WebhookOptions(
            allow_private=settings.webhook_allow_private,
            timeout=settings.webhook_timeout_seconds,
            per_endpoint=settings.webhook_concurrency,
            lease_seconds=settings.webhook_lease_seconds,
            disable_after=timedelta(days=settings.webhook_disable_after_days),
            poll_interval=settings.webhook_poll_interval,
            shutdown_seconds=settings.email_worker_shutdown_seconds,
            schedule=settings.webhook_schedule,
        ),
    )
