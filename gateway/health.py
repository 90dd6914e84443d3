"""Liveness and readiness.

An unauthenticated `/readyz` names only the components that are not ready; what failed, with its
addresses, goes to the log and to a caller with a valid API key.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from infra.redis.outbox import WebhookOutbox
from schemas.enums import ErrorCode

from .auth import bearer_token
from .errors import ApiError, error_response

log = logging.getLogger(__name__)
router = APIRouter()

#: a readiness probe that takes longer than this counts as a failure
_PROBE_TIMEOUT_S = 2.0


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _probe(check) -> str | None:
    try:
        ok = await asyncio.wait_for(check(), _PROBE_TIMEOUT_S)
    except Exception as exc:  # any failure of a probe is the answer, not an error of the gateway
        return f"{type(exc).__name__}: {exc}"
    return None if ok else "not connected"


def _authenticated(request: Request) -> bool:
    token = bearer_token(request.headers.get("authorization"))
    return token is not None and request.app.state.api_keys.tenant_for(token) is not None


@router.get("/readyz", summary="Kafka producer connected and Redis answering")
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    problems = {
        name: problem
        for name, problem in (
            ("redis", await _probe(state.redis.ping)),
            ("kafka", await _probe(state.producer.client.force_metadata_update)),
        )
        if problem
    }
    if problems:
        detail = "; ".join(f"{name}: {problem}" for name, problem in problems.items())
        log.warning("not ready (%s)", detail)
        if not _authenticated(request):
            detail = ", ".join(problems) + " not answering (details in the gateway log, or call with an API key)"
        return error_response(ApiError(ErrorCode.BACKEND_UNAVAILABLE, f"not ready ({detail})"))
    degraded = await _webhooks_degraded(state)
    if degraded:
        log.warning("webhooks degraded: %s", degraded)
        return JSONResponse({"status": "ready", "degraded": {"webhooks": degraded}})
    return JSONResponse({"status": "ready"})


async def _webhooks_degraded(state) -> str | None:
    """Why webhook deliveries are not going out, or None. Jobs are still served meanwhile (their
    deliveries wait in the outbox), so this degrades readiness instead of failing it."""
    gate = state.webhooks
    if not gate.enabled:
        return None
    outbox = WebhookOutbox(state.redis)
    try:
        live = await asyncio.wait_for(outbox.live_deliverers(time.time(), gate.stale_s), _PROBE_TIMEOUT_S)
    except Exception as exc:  # Redis answered the ping above; a failure here is reported, not raised
        return f"cannot read the deliverers' reports ({type(exc).__name__})"
    if live:
        return None
    return (f"no webhook deliverer has reported in {gate.stale_s:.0f}s (is the streams process running?):"
            " deliveries wait in the outbox until one does")
