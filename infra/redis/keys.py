"""Every Redis key genloom writes, in one place, with the reason for each number.

Keys of one job share the hash tag ``{job_id}`` so a Lua script touching them runs on one Redis
Cluster slot. The in-flight set is per tenant and modality, and the index of those sets is one per
deployment, so they live in other slots: admission, the fan-out and the reconciler pass them to
their scripts as separate keys (fine on one Redis; on a cluster these are the cross-slot steps:
keep the in-flight keys and the job keys on one node, or run against a standalone Redis; see
infra/redis/jobstore.py).
"""

from __future__ import annotations

from urllib.parse import quote

#: prefix of every genloom key, so a shared Redis can be scanned or flushed by owner
PREFIX = "genloom"

#: how long a job's record, replay log and dedupe state live after their last write (24 h):
#: long enough for a client to come back for a long video job, short enough to bound memory
JOB_TTL_S = 24 * 3600

#: most events kept per job in the replay log (XADD MAXLEN); a text job emits about one event per
#: decode step, so 10k covers an 8k-token answer with room for progress and control events
REPLAY_MAXLEN = 10_000

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
    """Stream: the job's released events, entry ids ``N-0`` with N = 1, 2, 3, ... Each appended entry is also
    published on the Pub/Sub channel of the same name (``N type data``; infra/redis/replay.py)."""
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


def store_epoch() -> str:
    """String, no expiry: a random value set once per Redis dataset. A replay reader that finds it gone
    or changed knows Redis lost its data (a restart without persistence, a flush): logs it follows may
    have been started again from entry 1."""
    return f"{PREFIX}:store:epoch"


def webhook_outbox() -> str:
    """Stream: webhook deliveries owed (one per deployment), read by the deliverers' consumer group."""
    return f"{PREFIX}:webhooks:outbox"


#: the outbox's consumer group
WEBHOOK_GROUP = "deliverers"


def webhook_deliverers() -> str:
    """Sorted set: each running webhook deliverer, scored by the Unix time it last reported in."""
    return f"{PREFIX}:webhooks:deliverers"


def inflight(tenant: str, modality: str) -> str:
    """Sorted set: ids of the tenant's jobs of this modality that are admitted and not yet terminal,
    scored by admission time. Its size is the in-flight count; the reconciler drops members whose
    record expired or is terminal. (Named apart from the integer counters it replaces, so an old
    counter left in a shared Redis is never read as a set.)"""
    return f"{PREFIX}:inflight-jobs:{tenant}:{modality}"


def inflight_index() -> str:
    """Set: every in-flight set that may have members, for the reconciler to visit (one per deployment)."""
    return f"{PREFIX}:inflight-jobs"


def user_jobs(tenant: str, user: str) -> str:
    """Set: the internal ids of the user's jobs whose records may still exist (written at admission,
    expiring with them), so erasing a user finds every replay log, record and artifact of theirs."""
    return f"{PREFIX}:user-jobs:{tenant}:{user}"


def tenant_jobs(tenant: str) -> str:
    """Sorted set: the internal ids of the tenant's most recent jobs, scored by admission time (written
    at admission, trimmed to the newest `JobStore.RECENT_KEPT`, expiring with the newest job's record)."""
    return f"{PREFIX}:tenant-jobs:{tenant}"


def reconciler_lock() -> str:
    """String with an expiry: held by the one reconciler acting at a time, its value the holder's name."""
    return f"{PREFIX}:reconciler:lock"


# --- the semantic cache's shared tier (streams/cache, infra/redis/semcache.py) ---------------------
#
# Every key of the cache's entries carries the hash tag ``{semcache}``: the put script evicts the
# least recently used entry of any scope, so all of them must live in one Redis Cluster slot (one
# shard holds the cache; it is bounded, see the numbers below). Pending misses are single keys
# without a script, in any slot.

#: how long a cache entry may answer after its job completed (1 h): answers go stale as models,
#: prompts and facts change; an hour keeps the repeats of a burst (the common case) and little else
CACHE_TTL_S = 3600

#: most entries of all scopes together (20k): at about 2 KB each (the answer, a float16 vector,
#: bookkeeping) this is about 40 MB of Redis, under the byte bound below
CACHE_MAX_ENTRIES = 20_000

#: most bytes of all entries together (64 MiB), counted as answer + vector + per-entry overhead
CACHE_MAX_BYTES = 64 * 1024 * 1024

#: most entries of one scope (256): a lookup reads the scope's vectors in one HGETALL, 256 x 776
#: bytes = 194 KB, about a millisecond on loopback; a scope rarely holds more distinct questions
CACHE_SCOPE_MAX_ENTRIES = 256

#: how long a miss waits for its job's answer to be stored (1 h): longer than any chat job runs;
#: a job that never completes leaves its marker to expire
CACHE_PENDING_TTL_S = 3600

_SEMCACHE = f"{PREFIX}:cache:{{semcache}}"


def cache_scope(scope: str) -> str:
    """Prefix of one scope's keys: ``:answers`` (hash entry id -> answer JSON), ``:vectors`` (hash
    entry id -> made-at time + float16 vector), ``:lru`` (sorted set entry id -> last use)."""
    return f"{_SEMCACHE}:s:{scope}"


def cache_scope_prefix() -> str:
    """What `cache_scope` puts before the scope (the put script builds other scopes' keys from it)."""
    return f"{_SEMCACHE}:s:"


def cache_lru() -> str:
    """Sorted set: ``scope/entry`` of every scope -> last use (the global LRU order)."""
    return f"{_SEMCACHE}:lru"


def cache_sizes() -> str:
    """Hash: ``scope/entry`` -> bytes the entry counts for."""
    return f"{_SEMCACHE}:sizes"


def cache_bytes() -> str:
    """Integer: the bytes of all entries together."""
    return f"{_SEMCACHE}:bytes"


def cache_pending(job_id: str) -> str:
    """String: the scope and vector of a job that missed, until its answer is stored."""
    return f"{PREFIX}:cache:pending:{job_id}"


# --- recent turns of users' sessions (infra/redis/sessions.py) ------------------------------------
#
# Tenant, user and session ids are free-form strings: they are percent-encoded into keys, so
# ("a:b", "c") and ("a", "b:c") never share a key and no id can close a hash tag early. All keys of
# one user carry the hash tag ``{tenant/user}``: erasing the user reads and deletes them in one
# transaction, so on Redis Cluster they must live in one slot.


def _ident(value: str) -> str:
    return quote(value, safe="")


def _memory_user(tenant: str, user: str) -> str:
    return f"{PREFIX}:mem:{{{_ident(tenant)}/{_ident(user)}}}"


def session_turns(tenant: str, user: str, session: str) -> str:
    """List: the session's recent turns as JSON, oldest first, capped and expiring after the last one."""
    return f"{_memory_user(tenant, user)}:session:{_ident(session)}"


def user_sessions(tenant: str, user: str) -> str:
    """Set: the session ids the user has turns under, so an erase finds every session list."""
    return f"{_memory_user(tenant, user)}:sessions"


# --- long-term memory (streams/memory) --------------------------------------------------------------

#: how long the memory writer's note of a job waits for its `completed` event (24 h, like the job)
MEMORY_PENDING_TTL_S = JOB_TTL_S

#: how long an erasure's report can be read back (7 days): the caller may poll it long after
ERASURE_TTL_S = 7 * 24 * 3600


def memory_pending(job_id: str) -> str:
    """String: the memory writer's note of a remembered user's job (owner, redacted prompt) until it completes."""
    return f"{PREFIX}:memory:pending:{job_id}"


#: how long a completion the memory writer read before its job's request waits for that request (10 min):
#: its tap fetches the events and the job topics together, so the request trails by a fetch or two; the
#: answer it holds is the one the job's replay log keeps for JOB_TTL_S anyway
MEMORY_EARLY_TTL_S = 600


def memory_early(job_id: str) -> str:
    """String: a job's completion (JSON, its text) that reached the memory writer before the job's request."""
    return f"{PREFIX}:memory:early:{job_id}"


def erasure(erase_id: str) -> str:
    """String: the JSON report of an erasure (counts only), written when it is done."""
    return f"{PREFIX}:memory:erasure:{erase_id}"


#: most moderation decisions kept per tenant (approximate MAXLEN): about a day of one job a second,
#: each with its prompt decision and at most a few output ones
MODERATION_AUDIT_MAXLEN = 200_000


def moderation_audit(tenant: str) -> str:
    """A tenant's moderation decisions (stream): job, stage, categories, scores, action; never the
    content, only a hash of what was blocked."""
    return f"{PREFIX}:moderation:audit:{{{tenant}}}"
