from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from odiseo.api.app import create_app
from odiseo.config import Settings


@pytest.fixture
def settings(database_url: tuple[str, str], tmp_path: Path) -> Settings:
    url, schema = database_url
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "order.html").write_text("<p>Order {{ number }} for {{ name }}</p>")
    (templates / "order.subject.txt").write_text("Your order {{ number }}")
    return Settings(
        database_url=url,
        schema_name=schema,
        email_provider="outbox",
        outbox_dir=tmp_path / "outbox",
        templates_dir=templates,
        log_to_file=False,
        allowed_senders="billing@odiseo.io,@acme.example",
        api_allowed_hosts="odiseo",  # the client's base_url; the Host check stays on
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://odiseo") as http:
            yield http
