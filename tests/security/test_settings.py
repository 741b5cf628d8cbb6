"""Secrets in the settings never show: not in repr(), str(), dumps, nor configuration errors."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from odiseo.config import Settings, load_settings
from odiseo.errors import ConfigError
from tests.support.app import API_KEYS, SECRETS

PASSWORD = "smtp-PASSWORD-s3cr3t"
DKIM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIdkimSECRETkeyMaterial\n-----END PRIVATE KEY-----"
DB_PASSWORD = "db-PASSWORD-s3cr3t"
EVERY_SECRET = (PASSWORD, "dkimSECRET", DB_PASSWORD, *SECRETS)


def secret_settings() -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        smtp_password=SecretStr(PASSWORD),
        api_keys=SecretStr(API_KEYS),
        dkim_domain="odiseo.io",
        dkim_selector="s1",
        dkim_private_key=SecretStr(DKIM_KEY),
        database_url=f"postgresql://odiseo:{DB_PASSWORD}@db.internal:5432/mail",
    )


def test_repr_and_str_hide_every_secret() -> None:
    settings = secret_settings()
    for shown in (repr(settings), str(settings)):
        for secret in EVERY_SECRET:  # the database URL's password included (repr=False)
            assert secret not in shown, f"{secret!r} in {shown!r}"
    for shown in (
        repr(settings.model_dump()),
        settings.model_dump_json(),
        repr(settings.smtp_password),
        str(settings.api_keys),
        f"{settings.dkim_private_key}",
    ):
        for secret in (PASSWORD, "dkimSECRET", *SECRETS):  # the SecretStr fields
            assert secret not in shown, f"{secret!r} in {shown!r}"
    # and they are still there for the code that needs them
    assert settings.api_keys.get_secret_value() == API_KEYS
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == PASSWORD


def test_secrets_from_the_environment_are_hidden_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("API_KEYS", API_KEYS)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.api_keys.get_secret_value() == API_KEYS
    for secret in (PASSWORD, *SECRETS):
        assert secret not in repr(settings)


def test_a_configuration_error_does_not_echo_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("API_KEYS", API_KEYS)
    monkeypatch.setenv("SMTP_PORT", "not-a-port")
    monkeypatch.setenv("DKIM_PRIVATE_KEY", DKIM_KEY)  # without DKIM_DOMAIN: invalid too
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)
    message = raised.value.message
    assert "SMTP_PORT" in message, message
    for secret in EVERY_SECRET:
        assert secret not in message
        assert secret not in repr(raised.value)
