"""The Python client of Odiseo: `Odiseo`, `AsyncOdiseo`, `email` (one email for a batch),
`verify_webhook`, the exceptions and the result types. Needs httpx only."""

from odiseo_client._calls import Attachment, email
from odiseo_client.client import AsyncOdiseo, Odiseo
from odiseo_client.errors import (
    Conflict,
    Invalid,
    NotFound,
    OdiseoError,
    RateLimited,
    Unauthorized,
    Unavailable,
    WebhookVerificationError,
)
from odiseo_client.models import (
    Accepted,
    BatchItem,
    BatchResult,
    Email,
    Event,
    QueueStatus,
    Rendered,
    SecretRotated,
    Suppression,
    Template,
    Webhook,
)
from odiseo_client.webhooks import verify_webhook

__version__ = "1.0.0"
__all__ = [
    "Accepted",
    "AsyncOdiseo",
    "Attachment",
    "BatchItem",
    "BatchResult",
    "Conflict",
    "Email",
    "Event",
    "Invalid",
    "NotFound",
    "Odiseo",
    "OdiseoError",
    "QueueStatus",
    "RateLimited",
    "Rendered",
    "SecretRotated",
    "Suppression",
    "Template",
    "Unauthorized",
    "Unavailable",
    "Webhook",
    "WebhookVerificationError",
    "email",
    "verify_webhook",
]
