"""`GET /v1/moderation/audit`: the caller's tenant's moderation decisions, newest first."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from infra.redis.audit import ModerationAudit
from schemas.api import ModerationAuditEntry, ModerationAuditPage

from .auth import tenant_of

router = APIRouter(prefix="/v1", tags=["moderation"])


@router.get("/moderation/audit", response_model=ModerationAuditPage, summary="Moderation decisions of this tenant")
async def audit(request: Request, tenant: str = Depends(tenant_of),
                limit: int = Query(default=100, ge=1, le=1000, description="Most entries returned."),
                job_id: str | None = Query(default=None, max_length=128, description="Only this job's decisions."),
                before: str | None = Query(default=None, pattern=r"^\d+-\d+$",
                                           description="Only entries older than this id (the last page's `before`)."),
                ) -> ModerationAuditPage:
    rows = await ModerationAudit(request.app.state.redis).query(tenant, limit=limit, job_id=job_id, before=before)
    data = [ModerationAuditEntry(id=entry_id, **{k: v for k, v in e.items() if k != "tenant"}) for entry_id, e in rows]
    return ModerationAuditPage(data=data, before=data[-1].id if len(data) == limit else None)
