"""The SMTP listener (`odiseo smtp`, and inside `odiseo run`): aiosmtpd servers on the
process's event loop (listener.py), each with a handler of its own: submission.py for
applications sending mail, bounces.py for mail coming back to VERP return paths."""

from __future__ import annotations

import socket

from odiseo.bounce_service import BounceService
from odiseo.config import Settings
from odiseo.errors import ConfigError
from odiseo.keys import KeyRing
from odiseo.service import EmailService
from odiseo.smtp.bounces import bounce_spec
from odiseo.smtp.listener import Listener, ListenerSpec, close_listeners, start_listeners
from odiseo.smtp.submission import submission_specs

__all__ = [
    "Listener",
    "ListenerSpec",
    "check_settings",
    "close_listeners",
    "listener_specs",
    "start_listeners",
    "wanted",
]


def wanted(settings: Settings) -> bool:
    """Whether the settings ask for any SMTP listener."""
    return (
        settings.smtp_submission_port is not None
        or settings.smtp_submission_tls_port is not None
        or settings.bounce_listen_port is not None
    )


def check_settings(settings: Settings, keys: KeyRing) -> None:
    """Raise ConfigError for listeners that could not work as configured: submission
    without API keys (AUTH could never succeed, and a submission port without AUTH
    would be an open relay)."""
    submission = settings.smtp_submission_port or settings.smtp_submission_tls_port
    if submission is not None and not keys.enabled:
        raise ConfigError(
            "SMTP_SUBMISSION_PORT needs API_KEYS (or API_KEYS_FILE): submission always "
            "authenticates, with an API key of the send scope as the password"
        )


def listener_specs(
    settings: Settings, *, service: EmailService, keys: KeyRing, bounces: BounceService
) -> list[ListenerSpec]:
    """Every listener the settings ask for (ConfigError: see check_settings)."""
    check_settings(settings, keys)
    hostname = socket.getfqdn()  # once: aiosmtpd would ask on every connection
    specs = submission_specs(settings, service=service, keys=keys, hostname=hostname)
    bounce = bounce_spec(settings, service=bounces, hostname=hostname)
    return [*specs, bounce] if bounce is not None else specs
