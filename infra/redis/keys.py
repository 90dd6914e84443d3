"""Every Redis key genloom writes, in one place, with the reason for each number.

Keys of one job share the hash tag ``{job_id}`` so a Lua script touching them runs on one Redis
Cluster slot. The in-flight counter is per tenant and modality, so it lives in another slot: the
fan-out passes it to its script as a separate key (fine on one Redis; on a cluster the counter
call is the one cross-slot step, see infra/redis/jobstore.py).
"""

from __future__ import annotations

#: prefix of every genloom key, so a shared Redis can be scanned or flushed by owner
PREFIX = "genloom"

#: how long a job's record, replay log and dedupe state live after their last write (24 h):
#: long enough for a client to come back for a long video job, short enough to bound memory
JOB_TTL_S = 24 * 3600

#: most events kept per job in the replay log (XADD MAXLEN); a text job emits about one event per
#: decode step, so 10k covers an 8k-token answer with room for progress and control events
REPLAY_MAXLEN = 10_000

#: how long an in-flight counter survives without an admission (6 h): a job whose terminal event
#: is lost (a worker dead for good) stops holding its slot after this, instead of forever
INFLIGHT_TTL_S = 6 * 3600

#: how long a delivered-webhook marker is kept (7 days): longer than any retry or replay horizon
WEBHOOK_MARK_TTL_S = 7 * 24 * 3600

#: how long a webhook delivery claim blocks a second deliverer (60 s): longer than one full
#: retry schedule of a single delivery attempt
WEBHOOK_CLAIM_TTL_S = 60

#: most deliveries kept in the webhook outbox stream (approximate MAXLEN): a day of one delivery a
#: second; a deliverer that is down longer than that loses the oldest
WEBHOOK_OUTBOX_MAXLEN = 100_000

#: how long a cancel flag is kept (24 h, like the job)
CANCEL_TTL_S = JOB_TTL_S

#: how long a job's encrypted placeholder mapping is kept (24 h): as long as its record and replay
#: log, which are all the gateway restores values into
REDACTIONS_TTL_S = JOB_TTL_S


def _job(job_id: str) -> str:
    return f"{PREFIX}:job:{{{job_id}}}"


def job_record(job_id: str) -> str:
    """Hash: the job's status record (status, tenant, progress, usage, timings, error, ...)."""
    return _job(job_id)


def replay_log(job_id: str) -> str:
    """Stream: the job's released events, entry ids ``N-0`` with N = 1, 2, 3, ..."""
    return f"{_job(job_id)}:log"


def dedupe(job_id: str) -> str:
    """Hash: highest seq per (source, attempt), the current attempt and the superseded ones, entry counter."""
    return f"{_job(job_id)}:dedupe"


def cancel_flag(job_id: str) -> str:
    """String: set once when a cancel was published, so a second cancel publishes nothing."""
    return f"{_job(job_id)}:cancel"


def redactions(job_id: str) -> str:
    """String: the job's placeholder -> value mapping, AES-GCM encrypted (infra/redis/redactions.py)."""
    return f"{_job(job_id)}:redactions"


def webhook_mark(job_id: str, event_id: int) -> str:
    """String: ``claimed`` while one deliverer tries, ``delivered`` after a 2xx."""
    return f"{_job(job_id)}:hook:{event_id}"


def webhook_progress_gate(job_id: str) -> str:
    """String with a short expiry: set when a progress webhook went out, throttling the next."""
    return f"{_job(job_id)}:hook:progress"


def webhook_outbox() -> str:
    """Stream: webhook deliveries owed (one per deployment), read by the deliverers' consumer group."""
    return f"{PREFIX}:webhooks:outbox"


#: the outbox's consumer group
WEBHOOK_GROUP = "deliverers"


def inflight(tenant: str, modality: str) -> str:
    """Integer: the tenant's jobs of this modality that are admitted and not yet terminal."""
    return f"{PREFIX}:inflight:{tenant}:{modality}"
