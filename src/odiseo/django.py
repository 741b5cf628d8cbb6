"""`EMAIL_BACKEND = "odiseo.django.EmailBackend"`, for a Django project beside the server.

The backend itself is `odiseo_client.django.EmailBackend`, in the odiseo-client
distribution (clients/python): an application installs that, with httpx, and never
the server's dependencies; the server never needs Django. This name resolves to it
on first use, when odiseo-client is installed too.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "EmailBackend":
        from odiseo_client.django import EmailBackend

        return EmailBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
