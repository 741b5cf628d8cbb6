"""Settings, read from the environment and a `.env` file.

The variable names and defaults of the original description are a contract
with existing users; new variables follow the same style.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from odiseo.domain.limits import domain_limits
from odiseo.domain.webhooks import RETRY_SCHEDULE
from odiseo.errors import ConfigError, StoreRefused, StoreUnavailable

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")  # used with fullmatch
_MIN_RENDER_MEMORY = 64 * 1024 * 1024  # room for a render process to start and compile

# Which commands read a variable (its `commands`): `--help` of each lists exactly these.
COMMANDS = (
    "run",
    "api",
    "worker",
    "smtp",
    "migrate",
    "send",
    "status",
    "suppressions",
    "purge",
    "erase",
)
API = ("run", "api")
SUBMISSION = ("run", "smtp")
WORKER = ("run", "worker")
SERVING = ("run", "api", "worker")
LOGGING = ("run", "api", "worker", "smtp", "migrate")
PREPARING = ("run", "api", "smtp", "send")  # builds messages: sender rules, templates, limits
STORE = COMMANDS


def setting(
    default: Any,
    *,
    help: str,
    section: str,
    commands: tuple[str, ...],
    example: str | None = None,
    **constraints: Any,
) -> Any:
    """A settings field with the metadata `.env.example`, `--help` and the tests read.

    Args:
        help: one sentence for `--help` and `.env.example` (the README's row may say more).
        section: the `.env.example` heading it is listed under (one of SECTIONS).
        commands: the `odiseo` commands that read it (API, WORKER, ... above).
        example: a value to show in `.env.example` instead of the default.
    """
    return Field(
        default,
        description=help,
        json_schema_extra={"section": section, "commands": list(commands), "example": example},
        **constraints,
    )


SECTIONS = (
    "Service",
    "Security",
    "Database",
    "Delivery / SMTP",
    "Worker",
    "Retention",
    "Unsubscribe links",
    "DKIM",
    "Templates",
    "Webhooks",
    "SMTP submission",
    "Bounces",
    "Dashboard",
    "Logging",
)


class Settings(BaseSettings):
    """Every setting of Odiseo; each field is the environment variable of its name.

    To add a variable: add a field made with `setting(...)` (its help, section, the
    commands that read it, and an example if the default is not a good one to show),
    then run `make env-example` to rewrite `.env.example`, and add its row to the
    README's Configuration table. `odiseo COMMAND --help` follows by itself;
    tests/unit/test_config_docs.py fails until all four name the same variables.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        hide_input_in_errors=True,
        env_ignore_empty=True,  # `SMTP_HOST=` in .env is unset, not a host named ""
    )

    # Service
    service_name: str = setting(
        "email-service",
        help="service identifier of the original configuration; accepted, not used yet",
        section="Service",
        commands=SERVING,
    )
    service_version: str = setting(
        "1.0.0", help="version reported by /health", section="Service", commands=API
    )
    api_host: str = setting(
        "127.0.0.1",
        help="address the API listens on (the Docker image and compose use 0.0.0.0); "
        "`odiseo worker` serves EMAIL_WORKER_METRICS_PORT on it",
        section="Service",
        commands=SERVING,
    )
    api_port: int = setting(
        8001, help="port the API listens on", section="Service", commands=API, ge=1, le=65535
    )
    api_workers: int = setting(
        1,
        help="`odiseo api`: processes serving the one port (PostgreSQL only); "
        "about one per spare core",
        section="Service",
        commands=API,
        ge=1,
        le=64,
    )
    api_access_log: bool = setting(
        False,
        help="one uvicorn log line per HTTP request (off, Odiseo still logs every accepted "
        "message and every refused request)",
        section="Service",
        commands=API,
    )
    api_allowed_hosts: str = setting(
        "",
        help="more names the API answers to in the Host header, comma-separated (* = no "
        "check); localhost, 127.0.0.1, [::1] and API_HOST always pass (on 0.0.0.0, any IP "
        "address); under compose, list email-service-api for other containers",
        section="Service",
        commands=API,
        example="mail-api.example.com,email-service-api",
    )
    api_keepalive_timeout_seconds: float = setting(
        5.0,
        help="an idle keep-alive connection is closed after this many seconds",
        section="Service",
        commands=API,
        gt=0,
        le=3600,
    )
    api_header_timeout_seconds: float = setting(
        10.0,
        help="a request's headers must arrive within this many seconds, or 408 and the "
        "connection is closed",
        section="Service",
        commands=API,
        gt=0,
        le=3600,
    )
    api_body_timeout_seconds: float = setting(
        60.0,
        help="a request's body must arrive within this many seconds after its headers, or "
        "408 and the connection is closed",
        section="Service",
        commands=API,
        gt=0,
        le=86400,
    )

    # Security
    api_keys: SecretStr = setting(
        SecretStr(""),
        help="API keys, comma-separated, each optionally with scopes (key:send, "
        "key:read+admin; none = all), 16+ characters each, never logged; without keys the "
        "API only listens on loopback",
        section="Security",
        commands=(*API, "smtp"),
        example="change-me-to-a-long-random-string",
    )
    api_keys_file: Path | None = setting(
        None,
        help="a file of API keys, one per line, same key:scopes form (# comments allowed)",
        section="Security",
        commands=(*API, "smtp"),
        example="/run/secrets/odiseo_keys",
    )
    allow_unauthenticated: bool = setting(
        False,
        help="let a keyless API listen beyond loopback",
        section="Security",
        commands=API,
    )
    metrics_require_key: bool = setting(
        False, help="ask for a read key on /metrics", section="Security", commands=API
    )
    rate_limit_per_minute: int = setting(
        0,
        help="requests per API key per minute, shared by the API processes (0: no limit)",
        section="Security",
        commands=(*API, "smtp"),
        ge=0,
    )
    max_request_bytes: int = setting(
        16 * 1024 * 1024,
        help="largest request body, bytes; 413 before it is read",
        section="Security",
        commands=API,
        ge=1024,
    )

    # Database
    database_url: str | None = setting(
        None,
        help="the queue's database: postgresql://user:pass@host:5432/db or sqlite:///path.db; "
        "unset means SQLite in ./data/odiseo.db (under compose, docker-compose.yml sets it)",
        section="Database",
        commands=STORE,
        example="postgresql://odiseo:secret@db.example.com:5432/mail",
        repr=False,
    )
    schema_name: str = setting(
        "test",
        help="PostgreSQL schema holding the tables, created if missing (compose uses odiseo)",
        section="Database",
        commands=STORE,
    )

    # Delivery / SMTP
    email_provider: Literal["smtp", "outbox", "simulator"] | None = setting(
        None,
        help="smtp, outbox or simulator (default: smtp when SMTP_HOST is set, else outbox)",
        section="Delivery / SMTP",
        commands=SERVING,
        example="outbox",
    )
    simulator_domain: str | None = setting(
        None,
        help="recipients at this domain go to the simulator, everyone else to SMTP (off)",
        section="Delivery / SMTP",
        commands=SERVING,
        example="simulator.example.com",
    )
    simulator_slow_seconds: float = setting(
        5.0,
        help="how long the simulator's slow@ recipients take",
        section="Delivery / SMTP",
        commands=SERVING,
        ge=0,
        le=600,
    )
    outbox_dir: Path = setting(
        Path("data/outbox"),
        help="where the outbox provider writes one <message_id>.eml per message",
        section="Delivery / SMTP",
        commands=SERVING,
    )
    smtp_host: str = setting(
        "smtp.gmail.com",
        help="SMTP server; setting it (even to the default) switches delivery to smtp",
        section="Delivery / SMTP",
        commands=SERVING,
    )
    smtp_port: int = setting(
        587,
        help="SMTP port; 465 means implicit TLS",
        section="Delivery / SMTP",
        commands=SERVING,
        ge=1,
        le=65535,
    )
    smtp_user: str | None = setting(
        None, help="SMTP login; unset means no AUTH", section="Delivery / SMTP", commands=SERVING
    )
    smtp_password: SecretStr | None = setting(
        None, help="SMTP password (never logged)", section="Delivery / SMTP", commands=SERVING
    )
    smtp_from_email: str = setting(
        "noreply@odiseo.io",
        help="default sender address; its domain names the Message-IDs",
        section="Delivery / SMTP",
        commands=PREPARING,
    )
    smtp_from_name: str = setting(
        "Odiseo", help="default sender display name", section="Delivery / SMTP", commands=PREPARING
    )
    smtp_use_tls: bool = setting(
        True,
        help="STARTTLS on a plain port (465 is always TLS)",
        section="Delivery / SMTP",
        commands=SERVING,
    )
    allowed_senders: str = setting(
        "",
        help="other From addresses a request may use: a@b.c or @domain, comma-separated",
        section="Delivery / SMTP",
        commands=PREPARING,
        example="billing@example.com,@example.com",
    )
    refuse_special_use_domains: bool = setting(
        False,
        help="refuse addresses at special-use or reserved names such as .local, .internal, "
        ".test (off: a relay for intranets and tests takes them)",
        section="Delivery / SMTP",
        commands=PREPARING,
    )
    smtp_tls_ca_file: Path | None = setting(
        None,
        help="extra CA bundle to verify the SMTP server with (default: system CAs only)",
        section="Delivery / SMTP",
        commands=SERVING,
        example="/etc/ssl/private-ca.pem",
    )
    smtp_tls_verify: bool = setting(
        True,
        help="verify the SMTP server's certificate; false only if you must (logged)",
        section="Delivery / SMTP",
        commands=SERVING,
    )
    smtp_pool_size: int = setting(
        8,
        help="SMTP connections a worker keeps open and sends over at once",
        section="Delivery / SMTP",
        commands=SERVING,
        ge=1,
        le=64,
    )
    smtp_max_per_second: int | None = setting(
        None,
        help="at most this many messages handed to the relay per second, by all workers "
        "together (off)",
        section="Delivery / SMTP",
        commands=WORKER,
        example="14",
        ge=1,
    )
    smtp_max_per_minute: int | None = setting(
        None,
        help="at most this many per minute, by all workers together (off)",
        section="Delivery / SMTP",
        commands=WORKER,
        example="600",
        ge=1,
    )
    smtp_max_per_day: int | None = setting(
        None,
        help="at most this many per day (UTC), by all workers together (off)",
        section="Delivery / SMTP",
        commands=WORKER,
        example="2000",
        ge=1,
    )
    domain_limits: str = setting(
        "",
        help="per recipient domain limits, e.g. gmail.com=600/min,outlook.com=300/min "
        "(also /s, /h, /day); all workers together (none)",
        section="Delivery / SMTP",
        commands=WORKER,
        example="gmail.com=600/min,outlook.com=300/min",
    )
    throttle_pause_seconds: float = setting(
        30.0,
        help="adaptive throttling: how long a reply that asks to slow down (421 4.7.x, "
        "Throttling…) pauses the relay or the recipient's domain the first time, doubling "
        "on repeats; 0 turns it off",
        section="Delivery / SMTP",
        commands=WORKER,
        ge=0,
    )
    throttle_max_pause_seconds: float = setting(
        900.0,
        help="adaptive throttling: the longest pause",
        section="Delivery / SMTP",
        commands=WORKER,
        gt=0,
    )
    smtp_timeout_seconds: float = setting(
        30.0,
        help="SMTP connect and command timeout, seconds",
        section="Delivery / SMTP",
        commands=SERVING,
        gt=0,
    )

    # Worker
    email_worker_poll_interval: float = setting(
        10.0,
        help="seconds between polls when idle (PostgreSQL also wakes on NOTIFY)",
        section="Worker",
        commands=WORKER,
        gt=0,
    )
    email_worker_batch_size: int = setting(
        50, help="messages claimed per batch", section="Worker", commands=WORKER, ge=1, le=1000
    )
    email_worker_lease_seconds: float = setting(
        300.0,
        help="claim lease, seconds; a dead worker's mail is retaken after it",
        section="Worker",
        commands=WORKER,
        ge=1,
    )
    email_worker_shutdown_seconds: float = setting(
        30.0,
        help="on SIGTERM, how long the message in hand may finish, seconds (keep below "
        "compose's stop_grace_period of 40s)",
        section="Worker",
        commands=WORKER,
        ge=0,
    )
    email_worker_db_retry_seconds: float = setting(
        2.0,
        help="while the database is unreachable, a worker tries it again this often, seconds",
        section="Worker",
        commands=WORKER,
        gt=0,
    )
    email_worker_metrics_port: int | None = setting(
        None,
        help="`odiseo worker`: serve Prometheus metrics on this port (default: off)",
        section="Worker",
        commands=("worker",),
        example="9100",
        ge=1,
        le=65535,
    )
    email_retry_max_attempts: int = setting(
        3,
        help="retries after the first attempt",
        section="Worker",
        commands=PREPARING,
        ge=0,
        le=100,
    )
    email_retry_backoff_seconds: float = setting(
        300.0,
        help="first retry delay, seconds, doubled for each further retry",
        section="Worker",
        commands=WORKER,
        ge=0,
    )

    # Retention
    retention_days: int | None = setting(
        None,
        help="delete finished messages (sent, failed, cancelled, suppressed) with their "
        "events and files this many days after they finished (off; at least 2)",
        section="Retention",
        commands=(*WORKER, "purge"),
        example="90",
        ge=2,
        le=36500,
    )
    redact_after_send: bool = setting(
        False,
        help="keep a sent message's metadata and events, drop its bodies and attachments",
        section="Retention",
        commands=WORKER,
    )

    # Unsubscribe links
    public_url: str | None = setting(
        None,
        help="the URL recipients reach this API at, for unsubscribe links; its host also "
        "passes the Host check",
        section="Unsubscribe links",
        commands=PREPARING,
        example="https://mail.example.com",
    )
    unsubscribe_secret: SecretStr | None = setting(
        None,
        help="signs one-click unsubscribe links (16+ characters, never logged); with "
        "PUBLIC_URL it turns them on",
        section="Unsubscribe links",
        commands=PREPARING,
        repr=False,
    )
    unsubscribe_link_days: int = setting(
        60,
        help="how long an unsubscribe link keeps working, days",
        section="Unsubscribe links",
        commands=PREPARING,
        ge=1,
        le=3650,
    )
    unsubscribe_tags: str = setting(
        "",
        help="messages with any of these tags get an unsubscribe link, comma-separated",
        section="Unsubscribe links",
        commands=PREPARING,
        example="newsletter,digest",
    )

    # DKIM
    dkim_domain: str | None = setting(
        None,
        help="sign outgoing mail with DKIM for this domain (the three DKIM variables go "
        "together; default: off)",
        section="DKIM",
        commands=WORKER,
        example="example.com",
    )
    dkim_selector: str | None = setting(
        None,
        help="DKIM selector: the key is published in DNS at SELECTOR._domainkey.DOMAIN",
        section="DKIM",
        commands=WORKER,
        example="odiseo",
    )
    dkim_private_key: SecretStr | None = setting(
        None,
        help="the DKIM private key: PEM text, or the path of a PEM file (never logged)",
        section="DKIM",
        commands=WORKER,
        example="/run/secrets/dkim.pem",
    )

    # Templates
    templates_dir: Path = setting(
        Path("templates"),
        help="directory of Jinja2 templates (the built-in ones are always available)",
        section="Templates",
        commands=PREPARING,
    )
    template_render_timeout_seconds: float = setting(
        2.0,
        help="a render (all the renders of one request together) is stopped after this many "
        "seconds: 422",
        section="Templates",
        commands=PREPARING,
        gt=0,
        le=300,
    )
    template_render_memory_bytes: int = setting(
        256 * 1024 * 1024,
        help="address space of each render process, bytes (0: no limit); a render past it "
        "gets a 422",
        section="Templates",
        commands=PREPARING,
        ge=0,
    )
    template_render_processes: int = setting(
        2,
        help="render processes per API process, started on first use; a render waits for a "
        "free one",
        section="Templates",
        commands=PREPARING,
        ge=1,
        le=64,
    )
    max_rendered_bytes: int = setting(
        1024 * 1024,
        help="largest rendered subject, HTML or text part of a template, bytes: 422 beyond",
        section="Templates",
        commands=PREPARING,
        ge=1024,
    )
    max_message_bytes: int = setting(
        10 * 1024 * 1024,
        help="largest content of one message (bodies + decoded attachments), bytes: 413 beyond",
        section="Security",
        commands=PREPARING,
        ge=1024,
    )

    # Dashboard
    ui_enabled: bool = setting(
        True,
        help="serve the web dashboard at /ui (signed in with an API key; open like the API "
        "when there are no keys)",
        section="Dashboard",
        commands=API,
    )
    ui_session_hours: float = setting(
        12.0,
        help="a dashboard sign-in ends this many hours after it began (kept server-side)",
        section="Dashboard",
        commands=API,
        gt=0,
        le=24 * 30,
    )

    # Webhooks
    webhook_allow_private: bool = setting(
        False,
        help="let webhook URLs be plain http and reach private, loopback and link-local "
        "addresses (tests, intranets); off: https to globally routable addresses only",
        section="Webhooks",
        commands=SERVING,
    )
    webhook_timeout_seconds: float = setting(
        10.0,
        help="a webhook POST must be answered within this many seconds, or it is retried",
        section="Webhooks",
        commands=WORKER,
        gt=0,
        le=300,
    )
    webhook_concurrency: int = setting(
        4,
        help="webhook POSTs in flight at once to one endpoint, per worker",
        section="Webhooks",
        commands=WORKER,
        ge=1,
        le=64,
    )
    webhook_disable_after_days: float = setting(
        5.0,
        help="an endpoint failing without a success for this many days is disabled, with a "
        "webhook.disabled event",
        section="Webhooks",
        commands=WORKER,
        gt=0,
    )
    webhook_retry_schedule: str = setting(
        ",".join(f"{s:g}" for s in RETRY_SCHEDULE),
        help="seconds before each attempt of a webhook delivery, comma-separated (the first "
        "is immediate)",
        section="Webhooks",
        commands=WORKER,
    )
    webhook_lease_seconds: float = setting(
        60.0,
        help="a claimed delivery is sent again after this many seconds if its worker died",
        section="Webhooks",
        commands=WORKER,
        ge=1,
    )
    webhook_poll_interval: float = setting(
        1.0,
        help="seconds between a worker's looks for new events and due webhook deliveries",
        section="Webhooks",
        commands=WORKER,
        gt=0,
    )

    # SMTP submission
    smtp_submission_port: int | None = setting(
        None,
        help="accept mail from applications over SMTP on this port (587 or 2525 are usual; "
        "default: off); needs API_KEYS",
        section="SMTP submission",
        commands=SUBMISSION,
        example="2525",
        ge=1,
        le=65535,
    )
    smtp_submission_host: str = setting(
        "127.0.0.1",
        help="address the submission listener binds; beyond loopback, AUTH waits for STARTTLS",
        section="SMTP submission",
        commands=SUBMISSION,
    )
    smtp_submission_tls_cert: Path | None = setting(
        None,
        help="PEM certificate (with its chain) for STARTTLS and implicit TLS",
        section="SMTP submission",
        commands=SUBMISSION,
        example="/etc/odiseo/smtp.pem",
    )
    smtp_submission_tls_key: Path | None = setting(
        None,
        help="its PEM private key (may be the same file; never logged)",
        section="SMTP submission",
        commands=SUBMISSION,
        example="/etc/odiseo/smtp.key",
    )
    smtp_submission_tls_port: int | None = setting(
        None,
        help="also listen with implicit TLS on this port (465 is usual; needs the "
        "certificate; default: off)",
        section="SMTP submission",
        commands=SUBMISSION,
        example="465",
        ge=1,
        le=65535,
    )
    smtp_submission_allow_plaintext_auth: bool = setting(
        False,
        help="accept AUTH before TLS on a listener beyond loopback (off: 538 until STARTTLS)",
        section="SMTP submission",
        commands=SUBMISSION,
    )
    smtp_submission_max_connections: int = setting(
        100,
        help="connections the submission listener serves at once; one more gets 421",
        section="SMTP submission",
        commands=SUBMISSION,
        ge=1,
        le=100_000,
    )
    smtp_submission_max_recipients: int = setting(
        100,
        help="envelope recipients of one submitted message; one more gets 452",
        section="SMTP submission",
        commands=SUBMISSION,
        ge=1,
        le=10_000,
    )
    smtp_submission_command_timeout_seconds: float = setting(
        300.0,
        help="an SMTP client silent this many seconds between commands is disconnected",
        section="SMTP submission",
        commands=SUBMISSION,
        gt=0,
        le=3600,
    )
    smtp_submission_data_timeout_seconds: float = setting(
        600.0,
        help="a message's DATA must arrive within this many seconds",
        section="SMTP submission",
        commands=SUBMISSION,
        gt=0,
        le=86400,
    )
    smtp_submission_auth_failures_per_minute: int = setting(
        10,
        help="failed AUTH attempts one IP address may make in a minute; the one reaching it "
        "gets 421 and the address a minute's pause",
        section="SMTP submission",
        commands=SUBMISSION,
        ge=1,
        le=10_000,
    )

    # Bounces
    bounce_domain: str | None = setting(
        None,
        help="send every message with a VERP return path at this domain and take its "
        "bounces on the bounce listener (needs BOUNCE_SECRET; default: off)",
        section="Bounces",
        commands=(*WORKER, "smtp"),
        example="bounces.example.com",
    )
    bounce_secret: SecretStr | None = setting(
        None,
        help="signs the VERP return paths, so no one can forge a bounce (16+ characters, "
        "never logged)",
        section="Bounces",
        commands=(*WORKER, "smtp"),
        repr=False,
    )
    bounce_listen_host: str = setting(
        "127.0.0.1",
        help="address the bounce listener takes mail on (0.0.0.0 behind an MX on port 25)",
        section="Bounces",
        commands=SUBMISSION,
    )
    bounce_listen_port: int | None = setting(
        None,
        help="port of the bounce listener, started by `odiseo run` (default: off; 25 in "
        "production)",
        section="Bounces",
        commands=SUBMISSION,
        example="2525",
        ge=1,
        le=65535,
    )
    bounce_max_message_bytes: int = setting(
        10 * 1024 * 1024,
        help="largest bounce the listener takes (SIZE; 552 beyond)",
        section="Bounces",
        commands=SUBMISSION,
        ge=1024,
    )
    ses_sns_topic_arns: str = setting(
        "",
        help="Amazon SNS topics whose SES notifications POST /inbound/ses takes, "
        "comma-separated (default: the endpoint is off)",
        section="Bounces",
        commands=API,
        example="arn:aws:sns:eu-west-1:123456789012:ses-bounces",
    )
    sendgrid_webhook_public_key: str | None = setting(
        None,
        help="SendGrid's Event Webhook verification key (base64); turns POST /inbound/sendgrid on",
        section="Bounces",
        commands=API,
    )
    postmark_webhook_token: SecretStr | None = setting(
        None,
        help="the basic-auth password in Postmark's webhook URL (16+ characters, never "
        "logged); turns POST /inbound/postmark on",
        section="Bounces",
        commands=API,
        repr=False,
    )
    mailgun_webhook_signing_key: SecretStr | None = setting(
        None,
        help="Mailgun's HTTP webhook signing key (never logged); turns POST /inbound/mailgun on",
        section="Bounces",
        commands=API,
        repr=False,
    )

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = setting(
        "INFO", help="DEBUG, INFO, WARNING, ERROR", section="Logging", commands=LOGGING
    )
    log_to_file: bool = setting(
        True,
        help="also write LOG_DIR/email_service.log, rotated (the Docker image sets false)",
        section="Logging",
        commands=LOGGING,
    )
    log_dir: Path = setting(Path("logs"), help="log directory", section="Logging", commands=LOGGING)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "email_provider",
        "database_url",
        "smtp_user",
        "email_worker_metrics_port",
        "api_keys_file",
        "dkim_domain",
        "dkim_selector",
        "public_url",
        "unsubscribe_secret",
        "simulator_domain",
        "smtp_submission_port",
        "smtp_submission_tls_cert",
        "smtp_submission_tls_key",
        "smtp_submission_tls_port",
        "retention_days",
        "smtp_max_per_second",
        "smtp_max_per_minute",
        "smtp_max_per_day",
        "bounce_domain",
        "bounce_secret",
        "bounce_listen_port",
        "sendgrid_webhook_public_key",
        "postmark_webhook_token",
        "mailgun_webhook_signing_key",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _dkim_all_or_nothing(self) -> Settings:
        given = [self.dkim_domain, self.dkim_selector, self.dkim_private_key]
        if any(v is not None for v in given) and not all(v is not None for v in given):
            raise ValueError("DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY go together")
        return self

    @model_validator(mode="after")
    def _submission_tls(self) -> Settings:
        if (self.smtp_submission_tls_cert is None) != (self.smtp_submission_tls_key is None):
            raise ValueError("SMTP_SUBMISSION_TLS_CERT and SMTP_SUBMISSION_TLS_KEY go together")
        if self.smtp_submission_tls_port is not None:
            if self.smtp_submission_tls_cert is None:
                raise ValueError("SMTP_SUBMISSION_TLS_PORT needs SMTP_SUBMISSION_TLS_CERT and _KEY")
            if self.smtp_submission_tls_port == self.smtp_submission_port:
                raise ValueError("SMTP_SUBMISSION_TLS_PORT must differ from SMTP_SUBMISSION_PORT")
        return self

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("must be an http(s) URL with no query, e.g. https://mail.example.com")
        return value

    @model_validator(mode="after")
    def _bounce_domain_needs_a_secret(self) -> Settings:
        if self.bounce_domain is not None and self.bounce_secret is None:
            raise ValueError("BOUNCE_DOMAIN needs BOUNCE_SECRET (16+ characters)")
        if self.bounce_listen_port is not None and self.bounce_domain is None:
            raise ValueError("BOUNCE_LISTEN_PORT needs BOUNCE_DOMAIN (and BOUNCE_SECRET)")
        return self

    @field_validator("bounce_domain")
    @classmethod
    def _bounce_domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower().rstrip(".")
        if not re.fullmatch(
            r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+", value
        ):
            raise ValueError("must be a domain name, e.g. bounces.example.com")
        return value

    @property
    def ses_topics(self) -> frozenset[str]:
        """SES_SNS_TOPIC_ARNS as a set."""
        return frozenset(t.strip() for t in self.ses_sns_topic_arns.split(",") if t.strip())

    @field_validator("unsubscribe_secret", "bounce_secret", "postmark_webhook_token")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @property
    def unsubscribe_tag_set(self) -> frozenset[str]:
        """UNSUBSCRIBE_TAGS as a set of tags."""
        return frozenset(t.strip() for t in self.unsubscribe_tags.split(",") if t.strip())

    @field_validator("smtp_password", "dkim_private_key", mode="before")
    @classmethod
    def _blank_password_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value else value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule_is_seconds(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",")]
        except ValueError:
            raise ValueError("must be seconds separated by commas, e.g. 0,5,300") from None
        if not delays or any(d < 0 or d != d or d == float("inf") for d in delays):
            raise ValueError("must be one or more non-negative numbers of seconds")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_a_post(self) -> Settings:
        if self.webhook_lease_seconds <= 2 * self.webhook_timeout_seconds:
            raise ValueError(
                "WEBHOOK_LEASE_SECONDS must be more than twice WEBHOOK_TIMEOUT_SECONDS "
                "(a delivery may wait for its endpoint's slot, then take its own timeout)"
            )
        return self

    @property
    def webhook_schedule(self) -> tuple[float, ...]:
        return tuple(float(part) for part in self.webhook_retry_schedule.split(","))

    @field_validator("template_render_memory_bytes")
    @classmethod
    def _room_to_start(cls, value: int) -> int:
        if 0 < value < _MIN_RENDER_MEMORY:
            raise ValueError(f"must be 0 (no limit) or at least {_MIN_RENDER_MEMORY}")
        return value

    @field_validator("schema_name")
    @classmethod
    def _schema_is_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.fullmatch(value):
            raise ValueError("must be a plain SQL identifier (letters, digits, _)")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split(":", 1)[0].lower()
        if scheme.split("+", 1)[0] not in {"postgresql", "postgres", "sqlite"}:
            raise ValueError("must start with postgresql:// or sqlite:///")
        try:
            urlsplit(value).port  # noqa: B018 - a port that is not a number stops here
        except ValueError:
            raise ValueError("the port is not a number from 0 to 65535") from None
        return value

    @field_validator("domain_limits")
    @classmethod
    def _domain_limits_parse(cls, value: str) -> str:
        domain_limits(value)  # ValueError names the entry
        return value

    @property
    def sender_allow_list(self) -> frozenset[str]:
        """ALLOWED_SENDERS as lower-case addresses and `@domain` entries."""
        return frozenset(p.strip().lower() for p in self.allowed_senders.split(",") if p.strip())

    @property
    def provider(self) -> Literal["smtp", "outbox", "simulator"]:
        """The delivery provider: explicit, else smtp when SMTP_HOST was given."""
        if self.email_provider is not None:
            return self.email_provider
        return "smtp" if "smtp_host" in self.model_fields_set else "outbox"


def database_problem(url: str | None, error: StoreUnavailable) -> str:
    """One line for a database a command cannot use: DATABASE_URL (password masked), the
    host, and the cause."""
    kind = "database refused" if isinstance(error, StoreRefused) else "database unavailable"
    cause = error.cause
    if url is None:
        return f"{kind}: DATABASE_URL is unset, so SQLite file ./data/odiseo.db: {cause}"
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        return f"{kind}: DATABASE_URL={url} (SQLite file {url.partition(':///')[2]}): {cause}"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    masked = urlunsplit(parts._replace(netloc=user + (":***" if colon else "") + at + hostport))
    masked = urlunsplit(urlsplit(masked)._replace(query=query))
    for secret in {unquote(password), password} - {""}:
        cause = cause.replace(secret, "***")
    where = "local socket"
    if parts.hostname:
        where = f"host {parts.hostname}, port {parts.port or 5432}"
    return f"{kind}: DATABASE_URL={masked} ({where}): {cause}"


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into one readable line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            problems.append(f"{name}: {error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
