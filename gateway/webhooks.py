"""Webhooks at the edge: a job's webhook is checked at submit (enabled here, a public destination),
and each tenant fetches its own signing key."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from infra.net.signing import tenant_secret
from infra.net.ssrf import Refused
from infra.settings.streams import WebhookSettings
from schemas import AnyRequest
from schemas.api import ErrorBody, WebhookSecret
from schemas.enums import ErrorCode

from .auth import tenant_of
from .errors import ApiError

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class WebhookGate:
    def __init__(self, settings: WebhookSettings) -> None:
        self._master = settings.master()
        self._policy = settings.policy()
        self.stale_s = settings.deliverer_stale_s

    @property
    def enabled(self) -> bool:
        return self._master is not None

    async def check(self, request: AnyRequest) -> None:
        """400 (param ``webhook`` or ``webhook.url``) for a webhook that would not or must not be delivered."""
        if request.webhook is None:
            return
        if self._master is None:
            raise ApiError(ErrorCode.INVALID_PARAMETER,
                           "webhooks are not enabled on this deployment (GENLOOM_WEBHOOK_SECRET is unset):"
                           " remove `webhook` and follow the job's events instead", param="webhook")
        try:
            await self._policy.check(request.webhook.url)
        except Refused as exc:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"webhook.url is refused: {exc}", param="webhook.url") from None

    def secret(self, tenant: str) -> WebhookSecret:
        if self._master is None:
            raise ApiError(ErrorCode.NOT_FOUND, "webhooks are not enabled on this deployment")
        return WebhookSecret(tenant=tenant, secret=tenant_secret(self._master, tenant))


@router.get("/secret", response_model=WebhookSecret, summary="Your webhook signing key",
            responses={status: {"model": ErrorBody} for status in (401, 404)})
async def webhook_secret(request: Request, tenant: str = Depends(tenant_of)) -> WebhookSecret:
    return request.app.state.webhooks.secret(tenant)
