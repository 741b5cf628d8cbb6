"""Hosted relays' bounce and complaint reports (README, "Bounces").

No API key: each relay proves itself with its own scheme — SNS's certificate
signature, SendGrid's ECDSA signature, Postmark's basic auth, Mailgun's HMAC. What can
be checked before the body is read (the endpoint is on, a topic, a header, a
password) is checked first; the signatures cover the body, so it is read for them
(bounded by MAX_REQUEST_BYTES like every request).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request

from odiseo.api.schemas import Problem
from odiseo.bounce_service import BounceService
from odiseo.inbound.relays import sendgrid

router = APIRouter(prefix="/inbound", tags=["bounces"])
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "the report's signature or credentials do not check"},
    404: {"model": Problem, "description": "this relay's endpoint is not configured"},
    422: {"model": Problem, "description": "not a report in the relay's documented form"},
}


def _bounces(request: Request) -> BounceService:
    service: BounceService = request.app.state.bounces
    return service


@router.post("/ses", responses=RESPONSES)
async def ses(request: Request) -> dict[str, int]:
    """Amazon SES notifications through an SNS HTTPS subscription (confirmed here)."""
    topic = request.headers.get("x-amz-sns-topic-arn")
    _bounces(request).ses_topic(topic)
    return {"recorded": await _bounces(request).ses(await request.body(), topic_arn=topic)}


@router.post("/sendgrid", responses=RESPONSES)
async def sendgrid_events(request: Request) -> dict[str, int]:
    """SendGrid's signed Event Webhook."""
    _bounces(request).sendgrid_key()
    signature = request.headers.get(sendgrid.SIGNATURE)
    timestamp = request.headers.get(sendgrid.TIMESTAMP)
    if not signature or not timestamp:
        raise HTTPException(401, f"{sendgrid.SIGNATURE} and {sendgrid.TIMESTAMP} are required")
    body = await request.body()
    recorded = await _bounces(request).sendgrid(body, signature=signature, timestamp=timestamp)
    return {"recorded": recorded}


@router.post("/postmark", responses=RESPONSES)
async def postmark(request: Request) -> dict[str, int]:
    """Postmark's bounce and spam-complaint webhooks (basic auth in the webhook URL)."""
    _bounces(request).postmark_authorised(request.headers.get("authorization"))
    return {"recorded": await _bounces(request).postmark(await request.body())}


@router.post("/mailgun", responses=RESPONSES)
async def mailgun(request: Request) -> dict[str, int]:
    """Mailgun's signed webhooks (failed, complained)."""
    _bounces(request).mailgun_on()
    return {"recorded": await _bounces(request).mailgun(await request.body())}
