"""Settings, read from the environment and a `.env` file.

The variable names and defaults of the original description are a contract
with existing users; new variables follow the same style.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from odiseo.domain.webhooks import RETRY_SCHEDULE
from odiseo.errors import ConfigError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MIN_RENDER_MEMORY = 64 * 1024 * 1024  # room for a render process to start and compile

# Every variable a process reads, for `--help` and the README.
ENVIRONMENT = {
    "SERVICE_NAME": "service identifier used in logs (email-service)",
    "SERVICE_VERSION": "version reported by /health (1.0.0)",
    "API_HOST": "address the API listens on (127.0.0.1)",
    "API_PORT": "port the API listens on (8001)",
    "API_WORKERS": "odiseo api: processes serving the API on one port (1); more need PostgreSQL",
    "API_ACCESS_LOG": "one uvicorn log line per HTTP request (false: accepted and refused "
    "requests are logged by Odiseo itself)",
    "API_ALLOWED_HOSTS": "more Host names the API answers to, comma-separated (* turns the check "
    "off); loopback names, API_HOST, and any IP address on 0.0.0.0 or :: always pass",
    "API_KEEPALIVE_TIMEOUT_SECONDS": "an idle keep-alive connection is closed after this (5)",
    "API_HEADER_TIMEOUT_SECONDS": "a request's headers must arrive within this, or the "
    "connection is closed (10)",
    "API_BODY_TIMEOUT_SECONDS": "a request's body must arrive within this after its headers, "
    "or 408 and the connection is closed (60)",
    "API_KEYS": "comma-separated API keys, each optionally key:send+read+admin (never logged)",
    "API_KEYS_FILE": "a file of API keys, one per line, same key:scopes form",
    "ALLOW_UNAUTHENTICATED": "let a keyless API listen beyond loopback (false)",
    "METRICS_REQUIRE_KEY": "ask for a read key on /metrics (false)",
    "RATE_LIMIT_PER_MINUTE": "requests per API key per minute, shared by API processes (0: off)",
    "MAX_REQUEST_BYTES": "largest request body; 413 before it is read (16777216)",
    "DATABASE_URL": "postgresql://user@host/db, or unset for SQLite in ./data/odiseo.db",
    "SCHEMA_NAME": "PostgreSQL schema holding the tables (test)",
    "EMAIL_PROVIDER": "smtp or outbox (smtp when SMTP_HOST is set, else outbox)",
    "OUTBOX_DIR": "where the outbox provider writes .eml files (./data/outbox)",
    "SMTP_HOST": "SMTP server (smtp.gmail.com)",
    "SMTP_PORT": "SMTP port; 465 means implicit TLS (587)",
    "SMTP_USER": "SMTP login; unset means no AUTH",
    "SMTP_PASSWORD": "SMTP password (never logged)",
    "SMTP_FROM_EMAIL": "sender address (noreply@odiseo.io)",
    "SMTP_FROM_NAME": "sender display name (Odiseo)",
    "SMTP_USE_TLS": "STARTTLS on a plain port (true)",
    "ALLOWED_SENDERS": "other From addresses a request may use: a@b.c or @domain, comma-separated",
    "REFUSE_SPECIAL_USE_DOMAINS": "refuse addresses at special-use or reserved names such as "
    ".local, .internal, .test (false: a relay for intranets and tests takes them)",
    "SMTP_TLS_VERIFY": "verify the SMTP server's certificate (true); false only by choice",
    "SMTP_TLS_CA_FILE": "extra CA bundle to verify the SMTP server with",
    "SMTP_POOL_SIZE": "SMTP connections a worker keeps open and sends over at once (4)",
    "SMTP_TIMEOUT_SECONDS": "SMTP connect/command timeout (30)",
    "EMAIL_WORKER_POLL_INTERVAL": "seconds between polls when idle (10)",
    "EMAIL_WORKER_BATCH_SIZE": "messages claimed per batch (50)",
    "EMAIL_WORKER_LEASE_SECONDS": "claim lease; a dead worker's mail is retaken after it (300)",
    "EMAIL_WORKER_SHUTDOWN_SECONDS": "on SIGTERM, how long the message in hand may finish (30)",
    "EMAIL_WORKER_DB_RETRY_SECONDS": "while the database is unreachable, a worker tries it "
    "again this often (2)",
    "EMAIL_WORKER_METRICS_PORT": "odiseo worker: serve Prometheus metrics on this port (off)",
    "EMAIL_RETRY_MAX_ATTEMPTS": "retries after the first attempt (3)",
    "EMAIL_RETRY_BACKOFF_SECONDS": "first retry delay, doubled each retry (300)",
    "PUBLIC_URL": "the URL recipients reach this API at, for unsubscribe links "
    "(e.g. https://mail.example.com; its host is also allowed by the Host check)",
    "UNSUBSCRIBE_SECRET": "signs one-click unsubscribe links (at least 16 characters; "
    "never logged); with PUBLIC_URL it turns unsubscribe links on",
    "UNSUBSCRIBE_LINK_DAYS": "how long an unsubscribe link works (60)",
    "UNSUBSCRIBE_TAGS": "messages with any of these tags get an unsubscribe link, "
    "comma-separated (none)",
    "DKIM_DOMAIN": "sign outgoing mail with DKIM for this domain (off)",
    "DKIM_SELECTOR": "DKIM selector: the key is published at SELECTOR._domainkey.DOMAIN",
    "DKIM_PRIVATE_KEY": "the DKIM private key: PEM text, or the path of a PEM file (never logged)",
    "TEMPLATES_DIR": "directory of Jinja2 templates (./templates)",
    "TEMPLATE_RENDER_TIMEOUT_SECONDS": "a render is stopped after this long, 422 (2); the renders "
    "of one request share it",
    "TEMPLATE_RENDER_MEMORY_BYTES": "address space of a render process (268435456; 0: no limit)",
    "TEMPLATE_RENDER_PROCESSES": "render processes per API process, started on first use (2)",
    "MAX_RENDERED_BYTES": "largest rendered subject, HTML or text part of a template (1048576)",
    "MAX_MESSAGE_BYTES": "largest message content, bodies + attachments (10485760); 413 beyond",
    "WEBHOOK_ALLOW_PRIVATE": "let webhook URLs be plain http and reach private, loopback and "
    "link-local addresses (false: https to globally routable addresses only)",
    "WEBHOOK_TIMEOUT_SECONDS": "a webhook POST must be answered within this, or it is retried (10)",
    "WEBHOOK_CONCURRENCY": "webhook POSTs in flight at once to one endpoint, per worker (4)",
    "WEBHOOK_DISABLE_AFTER_DAYS": "an endpoint failing without a success for this long is "
    "disabled, with a webhook.disabled event (5)",
    "WEBHOOK_RETRY_SCHEDULE": "seconds before each attempt of a webhook delivery, comma-separated "
    "(0,5,300,1800,7200,18000,36000,36000)",
    "WEBHOOK_LEASE_SECONDS": "a claimed delivery is sent again after this if its worker died (60)",
    "WEBHOOK_POLL_INTERVAL": "seconds between a worker's looks for new events and due "
    "webhook deliveries (1)",
    "SMTP_SUBMISSION_PORT": "odiseo smtp / odiseo run: accept mail from applications over SMTP "
    "on this port, e.g. 587 or 2525 (off)",
    "SMTP_SUBMISSION_HOST": "address the SMTP submission listener binds (127.0.0.1)",
    "SMTP_SUBMISSION_TLS_CERT": "PEM certificate (chain) for STARTTLS and implicit TLS on the "
    "submission listener",
    "SMTP_SUBMISSION_TLS_KEY": "PEM private key of SMTP_SUBMISSION_TLS_CERT (never logged)",
    "SMTP_SUBMISSION_TLS_PORT": "also accept submission with implicit TLS on this port, "
    "e.g. 465 (off; needs the certificate)",
    "SMTP_SUBMISSION_ALLOW_PLAINTEXT_AUTH": "accept AUTH without TLS on a listener beyond "
    "loopback (false: 538 until STARTTLS)",
    "SMTP_SUBMISSION_MAX_CONNECTIONS": "connections the submission listener serves at once; "
    "more get 421 (100)",
    "SMTP_SUBMISSION_MAX_RECIPIENTS": "recipients of one submitted message; more get 452 (100)",
    "SMTP_SUBMISSION_COMMAND_TIMEOUT_SECONDS": "an SMTP client silent this long between "
    "commands is disconnected (300)",
    "SMTP_SUBMISSION_DATA_TIMEOUT_SECONDS": "a message's DATA must arrive within this (600)",
    "SMTP_SUBMISSION_AUTH_FAILURES_PER_MINUTE": "failed AUTH attempts one IP address may make "
    "in a minute; beyond, 421 and a minute's pause (10)",
    "LOG_LEVEL": "DEBUG, INFO, WARNING, ERROR (INFO)",
    "LOG_TO_FILE": "also write LOG_DIR/email_service.log, rotated (true)",
    "LOG_DIR": "log directory (./logs)",
}


class Settings(BaseSettings):
    """Every setting of Odiseo; each field is the environment variable of its name."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        hide_input_in_errors=True,
    )

    service_name: str = "email-service"
    service_version: str = "1.0.0"
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8001, ge=1, le=65535)
    api_workers: int = Field(default=1, ge=1, le=64)
    api_access_log: bool = False
    api_allowed_hosts: str = ""
    api_keepalive_timeout_seconds: float = Field(default=5.0, gt=0, le=3600)
    api_header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    api_body_timeout_seconds: float = Field(default=60.0, gt=0, le=86400)

    api_keys: SecretStr = SecretStr("")
    api_keys_file: Path | None = None
    allow_unauthenticated: bool = False
    metrics_require_key: bool = False
    rate_limit_per_minute: int = Field(default=0, ge=0)
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)

    database_url: str | None = Field(default=None, repr=False)
    schema_name: str = "test"

    email_provider: Literal["smtp", "outbox"] | None = None
    outbox_dir: Path = Path("data/outbox")

    smtp_host: str = "smtp.gmail.com"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from_email: str = "noreply@odiseo.io"
    smtp_from_name: str = "Odiseo"
    smtp_use_tls: bool = True
    allowed_senders: str = ""
    refuse_special_use_domains: bool = False
    smtp_tls_ca_file: Path | None = None
    smtp_tls_verify: bool = True
    smtp_pool_size: int = Field(default=4, ge=1, le=64)
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)

    email_worker_poll_interval: float = Field(default=10.0, gt=0)
    email_worker_batch_size: int = Field(default=50, ge=1, le=1000)
    email_worker_lease_seconds: float = Field(default=300.0, ge=1)
    email_worker_shutdown_seconds: float = Field(default=30.0, ge=0)
    email_worker_db_retry_seconds: float = Field(default=2.0, gt=0)
    email_worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    email_retry_max_attempts: int = Field(default=3, ge=0, le=100)
    email_retry_backoff_seconds: float = Field(default=300.0, ge=0)

    public_url: str | None = None
    unsubscribe_secret: SecretStr | None = Field(default=None, repr=False)
    unsubscribe_link_days: int = Field(default=60, ge=1, le=3650)
    unsubscribe_tags: str = ""

    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_private_key: SecretStr | None = None

    templates_dir: Path = Path("templates")
    template_render_timeout_seconds: float = Field(default=2.0, gt=0, le=300)
    template_render_memory_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    template_render_processes: int = Field(default=2, ge=1, le=64)
    max_rendered_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)

    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    webhook_concurrency: int = Field(default=4, ge=1, le=64)
    webhook_disable_after_days: float = Field(default=5.0, gt=0)
    webhook_retry_schedule: str = ",".join(f"{s:g}" for s in RETRY_SCHEDULE)
    webhook_lease_seconds: float = Field(default=60.0, ge=1)
    webhook_poll_interval: float = Field(default=1.0, gt=0)

    smtp_submission_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_submission_host: str = "127.0.0.1"
    smtp_submission_tls_cert: Path | None = None
    smtp_submission_tls_key: Path | None = None
    smtp_submission_tls_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_submission_allow_plaintext_auth: bool = False
    smtp_submission_max_connections: int = Field(default=100, ge=1, le=100_000)
    smtp_submission_max_recipients: int = Field(default=100, ge=1, le=10_000)
    smtp_submission_command_timeout_seconds: float = Field(default=300.0, gt=0, le=3600)
    smtp_submission_data_timeout_seconds: float = Field(default=600.0, gt=0, le=86400)
    smtp_submission_auth_failures_per_minute: int = Field(default=10, ge=1, le=10_000)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_to_file: bool = True
    log_dir: Path = Path("logs")

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
        "smtp_submission_port",
        "smtp_submission_tls_cert",
        "smtp_submission_tls_key",
        "smtp_submission_tls_port",
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

    @field_validator("unsubscribe_secret")
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
        if not _IDENTIFIER.match(value):
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
        return value

    @property
    def sender_allow_list(self) -> frozenset[str]:
        """ALLOWED_SENDERS as lower-case addresses and `@domain` entries."""
        return frozenset(p.strip().lower() for p in self.allowed_senders.split(",") if p.strip())

    @property
    def provider(self) -> Literal["smtp", "outbox"]:
        """The delivery provider: explicit, else smtp when SMTP_HOST was given."""
        if self.email_provider is not None:
            return self.email_provider
        return "smtp" if "smtp_host" in self.model_fields_set else "outbox"


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
