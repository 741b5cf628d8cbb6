from __future__ import annotations

from pathlib import Path

import pytest

from odiseo.config import Settings, load_settings
from odiseo.errors import ConfigError

ORIGINAL = [
    "SERVICE_NAME", "SERVICE_VERSION", "API_PORT", "DATABASE_URL", "SCHEMA_NAME", "SMTP_HOST",
    "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD", "SMTP_FROM_EMAIL", "SMTP_FROM_NAME",
    "SMTP_USE_TLS", "EMAIL_WORKER_POLL_INTERVAL", "EMAIL_WORKER_BATCH_SIZE",
    "EMAIL_RETRY_MAX_ATTEMPTS", "EMAIL_RETRY_BACKOFF_SECONDS", "LOG_LEVEL", "LOG_TO_FILE",
    "LOG_DIR",
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_original_variables_keep_their_names_and_defaults() -> None:
    settings = load_settings()
    fields = {name.upper() for name in Settings.model_fields}
    assert set(ORIGINAL) <= fields
    assert (settings.service_name, settings.service_version, settings.api_port) == (
        "email-service",
        "1.0.0",
        8001,
    )
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_use_tls) == (
        "smtp.gmail.com",
        587,
        True,
    )
    assert (settings.smtp_from_email, settings.smtp_from_name) == ("noreply@odiseo.io", "Odiseo")
    assert settings.email_worker_poll_interval == 10
    assert settings.email_worker_batch_size == 50
    assert settings.email_retry_max_attempts == 3
    assert settings.email_retry_backoff_seconds == 300
    assert (settings.log_level, settings.log_to_file, settings.log_dir) == (
        "INFO",
        True,
        Path("logs"),
    )
    assert settings.schema_name == "test"
    assert settings.database_url is None


def test_provider_is_outbox_unless_smtp_host_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().provider == "outbox"
    monkeypatch.setenv("SMTP_HOST", "mail.example.com")
    assert load_settings().provider == "smtp"
    monkeypatch.setenv("EMAIL_PROVIDER", "outbox")
    assert load_settings().provider == "outbox"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("API_PORT=9100\nSMTP_FROM_NAME=Acme\n")
    settings = load_settings()
    assert (settings.api_port, settings.smtp_from_name) == (9100, "Acme")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EMAIL_WORKER_BATCH_SIZE", "abc"),
        ("API_PORT", "70000"),
        ("SCHEMA_NAME", "bad name;drop"),
        ("SCHEMA_NAME", "odiseo\n"),  # `$` matched before a final newline
        ("EMAIL_PROVIDER", "carrier-pigeon"),
        ("DATABASE_URL", "mysql://x"),
        ("LOG_TO_FILE", "perhaps"),
        ("THROTTLE_PAUSE_SECONDS", "inf"),  # the doubling overflowed at run time
        ("THROTTLE_MAX_PAUSE_SECONDS", "1e400"),
    ],
)
def test_invalid_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert name in message and "\n" not in message


def test_password_is_hidden_from_repr_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:dbsecret@h/db")
    settings = load_settings()
    assert "hunter2-secret" not in repr(settings) and "dbsecret" not in repr(settings)
    monkeypatch.setenv("API_PORT", "hunter2-secret")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "hunter2-secret" not in str(caught.value)


def test_connection_limits_and_allowed_hosts_have_sane_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    assert settings.api_keepalive_timeout_seconds == 5
    assert settings.api_header_timeout_seconds == 10
    assert settings.api_body_timeout_seconds == 60
    assert settings.api_allowed_hosts == ""
    monkeypatch.setenv("API_HEADER_TIMEOUT_SECONDS", "0")
    with pytest.raises(ConfigError, match="API_HEADER_TIMEOUT_SECONDS"):
        load_settings()


def test_a_blank_value_is_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: `SMTP_HOST=` in .env made an SMTP host of "" and every email failed."""
    (tmp_path / ".env").write_text("SMTP_HOST=\nSMTP_PORT=\nLOG_LEVEL=\nAPI_KEYS=\n")
    monkeypatch.setenv("SMTP_FROM_NAME", "")
    settings = load_settings()
    assert settings.provider == "outbox"
    assert (settings.smtp_host, settings.smtp_port, settings.log_level) == (
        "smtp.gmail.com",
        587,
        "INFO",
    )
    assert settings.smtp_from_name == "Odiseo"
    (tmp_path / ".env").write_text("SMTP_HOST=mail.example.com\n")
    assert load_settings().provider == "smtp"
