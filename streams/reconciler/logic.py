"""What counts as lost, and what its owner is told (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from infra.redis.jobstore import Held
from infra.settings.streams import ReconcilerSettings


@dataclass(frozen=True)
class Lost:
    job_id: str
    tenant: str
    message: str


def lost_jobs(held: list[Held], now: float, limits: ReconcilerSettings) -> list[Lost]:
    """The held jobs whose last event is older than their status and modality allow.

    Conservative by construction: only silence counts (a job that still emits anything, a token, a
    progress step, is never lost), and the limits are generous multiples of the work between two
    events. A clock step backwards makes a job look younger, never lost.
    """
    out: list[Lost] = []
    for job in held:
        limit = limits.silence_limit_s(job.status, job.modality)
        silent = now - job.since
        if silent > limit:
            what = "not started by any worker" if job.status == "queued" else "no event from its worker"
            out.append(Lost(job.job_id, job.tenant, (
                f"the {job.modality} job was lost ({what} for {silent:.0f}s, over the {limit:.0f}s limit):"
                " it can no longer end by itself; resubmit the same request with the same job_id to run it again"
            )))
    return out
