"""The web dashboard at /ui: see the queue, find any message, act on it.

Server-rendered pages (Jinja2, autoescaped) with htmx for the parts that refresh
themselves, every asset vendored in static/ (no CDN, no build step). The pages
call the same services as the API's routes (EmailService, OutcomeService,
WebhookService, TemplateService, OperationsService) and never the store.

- sessions.py: sign-in with an API key, the session cookie, CSRF, who may act
- web.py: templates, the Content-Security-Policy and other headers, forms
- overview.py, charts.py: the first page and its SVG charts
- messages.py: search, detail, sandboxed HTML and attachments, actions
- library.py: templates, live preview, versions and diffs
- lists.py: suppressions and webhooks
- docs.py: /docs and /redoc on the vendored Swagger UI and ReDoc
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from odiseo.dashboard import library, lists, messages, overview, sessions
from odiseo.dashboard.docs import install_docs
from odiseo.dashboard.web import ASSETS, STATIC, SecurityHeaders

__all__ = ["install", "install_docs"]


def install(app: FastAPI, *, enabled: bool) -> None:
    """Serve the vendored assets and the documentation pages; with `enabled`
    (UI_ENABLED), the dashboard under /ui too."""
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="assets")
    install_docs(app)
    if not enabled:
        return
    for module in (sessions, overview, messages, library, lists):
        app.include_router(module.router)
    app.add_exception_handler(sessions.SignInNeeded, sessions.sign_in_redirect)
    app.add_middleware(SecurityHeaders)
