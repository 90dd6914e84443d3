"""Liveness and readiness.

An unauthenticated `/readyz` names only the components that are not ready; what failed, with its
addresses, goes to the log and to a caller with a valid API key.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

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
    return JSONResponse({"status": "ready"})
