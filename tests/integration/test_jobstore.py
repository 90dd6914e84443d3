"""The job store against a real redis-server: admission, the fan-out's apply, following the replay log."""

from __future__ import annotations

import uuid

import pytest

from infra.redis import keys
from infra.redis.client import connect
from infra.redis.jobrecord import JobRecord
from infra.redis.jobstore import Admitted, Appended, Dropped, Existing, Full, JobStore, ReplayExpired, expiry_slack_s
from schemas.enums import ErrorCode, EventSource, EventType, JobStatus, Modality
from schemas.events import Accepted, Completed, Failed, ModelInfo, Started, TokenDelta

pytestmark = pytest.mark.integration

W = EventSource.WORKER
MODEL = ModelInfo(id="tiny", device="cpu", dtype="float32")


@pytest.fixture
async def redis(redis_url):
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def store(redis) -> JobStore:
    return JobStore(redis, job_ttl_s=60, replay_maxlen=100)


def _id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _record(tenant: str, fingerprint: str = "f1") -> JobRecord:
    return JobRecord(status=JobStatus.QUEUED, tenant=tenant, modality=Modality.TEXT, fingerprint=fingerprint,
                     created_at=1.5)


def _ev(cls, job_id: str, seq: int, attempt: int = 0, **fields):
    return cls(job_id=job_id, seq=seq, attempt=attempt, source=W, **fields)


async def _apply(store: JobStore, event, now: float = 1.0):
    return await store.apply(event, event.model_dump_json().encode(), now)


async def test_admission_is_idempotent_and_bounded(store, redis):
    tenant = _id("t")
    first, second, third = _id("a"), _id("b"), _id("c")
    assert await store.admit(first, _record(tenant), max_inflight=2) == Admitted()
    loaded = await store.load(first)
    assert loaded.status == JobStatus.QUEUED and loaded.fingerprint == "f1" and loaded.slot_held
    assert loaded.slot == keys.inflight(tenant, "text") and loaded.created_at == 1.5
    assert await store.admit(first, _record(tenant, "other"), max_inflight=2) == Existing("f1", tenant)
    assert await store.inflight(tenant, "text") == 1  # a repeat takes no second slot
    assert await store.admit(second, _record(tenant), max_inflight=2) == Admitted()
    assert await store.admit(third, _record(tenant), max_inflight=2) == Full(2)
    assert await store.load(third) is None
    assert 0 < await redis.ttl(keys.job_record(first)) <= 60


async def test_admission_lists_only_new_jobs_in_the_tenant_and_user_indexes(store, redis, monkeypatch):
    """The indexes are written by the admission's own script call: a repeat or a refusal lists nothing, the
    tenant's list keeps the newest RECENT_KEPT, and both expire with the records."""
    monkeypatch.setattr(JobStore, "RECENT_KEPT", 2)
    tenant = _id("t")
    jobs = [_id(name) for name in "abc"]
    user_record = JobRecord(status=JobStatus.QUEUED, tenant=tenant, user="u1", modality=Modality.TEXT,
                            fingerprint="f1", created_at=1.5)
    assert await store.admit(jobs[0], user_record, max_inflight=5, now=10.0) == Admitted()
    assert await store.admit(jobs[1], _record(tenant), max_inflight=5, now=11.0) == Admitted()
    assert await store.admit(jobs[0], user_record, max_inflight=5, now=12.0) == Existing("f1", tenant)
    assert [job for job, _ in await store.recent_jobs(tenant, 10)] == [jobs[1], jobs[0]]
    assert await redis.zscore(keys.tenant_jobs(tenant), jobs[0]) == 10.0  # the repeat did not touch it
    assert await store.user_job_ids(tenant, "u1") == [jobs[0]]
    assert await redis.exists(keys.user_jobs(tenant, "")) == 0
    assert await store.admit(jobs[2], _record(tenant), max_inflight=5, now=13.0) == Admitted()
    assert [job for job, _ in await store.recent_jobs(tenant, 10)] == [jobs[2], jobs[1]]  # trimmed to 2
    assert await store.admit(_id("full"), _record(tenant), max_inflight=3, now=14.0) == Full(3)
    assert [job for job, _ in await store.recent_jobs(tenant, 10)] == [jobs[2], jobs[1]]
    assert 0 < await redis.ttl(keys.tenant_jobs(tenant)) <= 60
    assert 0 < await redis.ttl(keys.user_jobs(tenant, "u1")) <= 60


async def test_a_record_stays_unacknowledged_until_its_publish_is_acknowledged(store):
    tenant, job = _id("t"), _id("ack")
    record = JobRecord(status=JobStatus.QUEUED, tenant=tenant, modality=Modality.TEXT, fingerprint="f1",
                       unacked=True)
    await store.admit(job, record, max_inflight=5)
    assert (await store.load(job)).unacked
    assert await store.admit(job, record, max_inflight=5) == Existing("f1", tenant, unacked=True)
    await store.acknowledged(job)
    assert not (await store.load(job)).unacked
    assert await store.admit(job, record, max_inflight=5) == Existing("f1", tenant, unacked=False)
    assert await store.inflight(tenant, "text") == 1  # kept all along: the job may run


async def test_the_attempt_that_started_last_is_current_whatever_its_number(store):
    tenant, job = _id("t"), _id("skew")
    await store.admit(job, _record(tenant), max_inflight=5)
    ahead, behind = 1_700_000_000_000, 1_699_999_000_000  # the dead worker's clock ran ahead
    outcomes = [
        await _apply(store, _ev(Started, job, 0, attempt=ahead, worker="w1", model=MODEL)),
        await _apply(store, _ev(TokenDelta, job, 1, attempt=ahead, text="a", tokens=1)),
        await _apply(store, _ev(Started, job, 0, attempt=behind, worker="w2", model=MODEL)),   # takeover
        await _apply(store, _ev(TokenDelta, job, 2, attempt=ahead, text="late", tokens=1)),   # superseded
        await _apply(store, _ev(TokenDelta, job, 1, attempt=behind, text="A", tokens=1)),
        await _apply(store, _ev(Completed, job, 2, attempt=behind, text="A")),
    ]
    assert outcomes == [Appended(1, None), Appended(2, None), Appended(3, None), Dropped("stale_attempt"),
                        Appended(4, None), Appended(5, None)]
    record = await store.load(job)
    assert record.status == JobStatus.COMPLETED and record.text == "A" and record.worker == "w2"
    # an attempt that never started (it failed its checks on the new worker) still ends the job
    other = _id("skew")
    await _apply(store, _ev(Started, other, 0, attempt=ahead, worker="w1", model=MODEL))
    assert await _apply(store, _ev(Failed, other, 0, attempt=behind, code="invalid_parameter", message="x")) \
        == Appended(2, None)
    assert (await store.load(other)).status == JobStatus.FAILED


async def test_apply_dedupes_drops_stale_attempts_and_keeps_the_first_terminal(store, redis):
    tenant, job = _id("t"), _id("apply")
    await store.admit(job, _record(tenant), max_inflight=5)
    outcomes = [
        await _apply(store, Accepted(job_id=job, seq=0, source=EventSource.GATEWAY, tenant=tenant,
                                     modality=Modality.TEXT)),
        await _apply(store, _ev(Started, job, 0, worker="w1", model=MODEL)),
        await _apply(store, _ev(TokenDelta, job, 1, text="a", tokens=1)),
        await _apply(store, _ev(TokenDelta, job, 1, text="a", tokens=1)),                  # redelivered
        await _apply(store, _ev(Started, job, 0, attempt=1, worker="w2", model=MODEL)),   # takeover
        await _apply(store, _ev(TokenDelta, job, 2, text="b", tokens=1)),                  # the old attempt
        await _apply(store, _ev(Completed, job, 1, attempt=1, text="A"), now=7.0),
        await _apply(store, _ev(Failed, job, 2, attempt=1, code="generation_error", message="late")),
    ]
    assert outcomes == [Appended(1, None), Appended(2, None), Appended(3, None), Dropped("duplicate"),
                        Appended(4, None), Dropped("stale_attempt"), Appended(5, None), Dropped("after_terminal")]
    record = await store.load(job)
    assert record.status == JobStatus.COMPLETED and record.text == "A" and record.error is None
    assert record.terminal_id == 5 and record.terminal_type == EventType.COMPLETED and record.last_event_id == 5
    assert record.worker == "w2" and record.model_info == MODEL and record.updated_at == 7.0
    assert not record.slot_held and await store.inflight(tenant, "text") == 0
    assert [e.type for e in await store.entries(job)] == ["accepted", "started", "token", "started", "completed"]


async def test_the_slot_is_released_once_and_the_log_trimmed_to_maxlen(redis):
    store = JobStore(redis, replay_maxlen=4, job_ttl_s=60)
    tenant, job = _id("t"), _id("trim")
    await store.admit(job, _record(tenant), max_inflight=5)
    other = _id("other")
    await store.admit(other, _record(tenant), max_inflight=5)
    outcomes = [await _apply(store, _ev(TokenDelta, job, seq, text="t", tokens=1)) for seq in range(6)]
    outcomes += [await _apply(store, _ev(Completed, job, 6)), await _apply(store, _ev(Completed, job, 7))]
    assert [o.event_id for o in outcomes[:7]] == list(range(1, 8)) and outcomes[-1] == Dropped("after_terminal")
    assert [e.id for e in await store.entries(job)] == [4, 5, 6, 7]
    assert await store.inflight(tenant, "text") == 1  # only this job's slot came back
    assert 0 < await redis.ttl(keys.replay_log(job)) <= 60


async def test_a_batch_applies_in_order_and_a_status_never_moves_back(store):
    tenant, job = _id("t"), _id("batch")
    await store.admit(job, _record(tenant), max_inflight=5)
    started = _ev(Started, job, 0, worker="w", model=MODEL)
    accepted_late = Accepted(job_id=job, seq=0, source=EventSource.STREAMS, tenant=tenant, modality=Modality.TEXT)
    items = [(e, e.model_dump_json().encode()) for e in (started, accepted_late, started)]
    assert await store.apply_batch(items, 2.0) == [Appended(1, None), Appended(2, None), Dropped("duplicate")]
    assert (await store.load(job)).status == JobStatus.RUNNING


async def test_follow_in_order_from_a_cursor_and_expired_windows(redis):
    store = JobStore(redis, replay_maxlen=3, job_ttl_s=60)
    job = _id("follow")
    events = [_ev(TokenDelta, job, seq, text=str(seq), tokens=1) for seq in range(5)] + [_ev(Completed, job, 5)]
    payloads = {}
    for event in events:
        payloads[(await _apply(store, event)).event_id] = event.model_dump_json().encode()
    record = await store.load(job)
    kept = [e async for e in store.follow(job, record, None, 50)]
    assert [e.id for e in kept] == [4, 5, 6] and kept[-1].terminal and isinstance(kept[-1].event, Completed)
    assert [e.data for e in kept] == [payloads[4], payloads[5], payloads[6]]  # the stored bytes, as they were
    assert [e.id async for e in store.follow(job, record, 4, 50)] == [5, 6]
    assert [e async for e in store.follow(job, record, 6, 50)] == []  # past the terminal one
    with pytest.raises(ReplayExpired, match="starts at 4"):
        [e async for e in store.follow(job, record, 1, 50)]


async def test_follow_waits_with_none_until_the_next_event(store):
    job = _id("wait")
    first = await _apply(store, _ev(TokenDelta, job, 0, text="a", tokens=1))
    follow = store.follow(job, await store.load(job), None, 20)
    assert (await anext(follow)).id == first.event_id
    assert await anext(follow) is None  # idle: one None per block
    await _apply(store, _ev(Completed, job, 1))
    got = [e async for e in follow]
    assert [e for e in got if e is not None][-1].type == EventType.COMPLETED


async def test_cancel_flag_and_video_meta_are_set_once(store):
    job = _id("flag")
    assert await store.flag_cancel(job, "t") and not await store.flag_cancel(job, "t")
    await store.clear_cancel(job)
    assert await store.flag_cancel(job, "t")
    await store.admit(job, JobRecord(status=JobStatus.QUEUED, tenant="t", modality=Modality.VIDEO, fingerprint="f"),
                      max_inflight=5)
    await store.keep_video_meta(job, {"model": "v1", "size": None, "seconds": "1"})
    await store.keep_video_meta(job, {"model": "v2", "size": "8x8", "seconds": "2"})
    assert (await store.load(job)).video_meta == {"model": "v1", "size": None, "seconds": "1"}


async def test_reconcile_drops_slots_of_expired_and_terminal_records_and_finds_the_silent(store, redis):
    tenant = _id("t")
    expired, ended, queued, running = _id("exp"), _id("end"), _id("q"), _id("run")
    for job in (expired, ended, queued, running):
        assert await store.admit(job, _record(tenant), max_inflight=4, now=10.0) == Admitted()
    assert await store.admit(_id("full"), _record(tenant), max_inflight=4) == Full(4)
    await redis.delete(keys.job_record(expired))  # its record expired: nothing would ever release it
    # a terminal recorded without its slot key, as by a fan-out that lost the slot's name
    await redis.hset(keys.job_record(ended), mapping={"terminal_id": 3, "status": "completed"})
    await _apply(store, _ev(Started, running, 0, attempt=5, worker="w", model=MODEL), now=20.0)

    mine = {expired, ended, queued, running}

    async def lost(limits: tuple[float, float], before: float | None = None) -> dict:
        found = await store.reconcile(100.0, lambda modality: limits, admitted_before=before)
        assert found.held >= 2
        return {h.job_id: h for h in found.lost if h.job_id in mine}

    # at 100 the queued job has been silent 98.5 s (since its created_at), the running one 80 s
    candidates = await lost((90, 90))
    assert set(candidates) == {queued}
    assert candidates[queued].status == JobStatus.QUEUED and candidates[queued].since == 1.5
    assert candidates[queued].tenant == tenant and candidates[queued].admitted == 10.0
    both = await lost((90, 50))
    assert set(both) == {queued, running} and both[running].since == 20.0 and both[running].modality == "text"
    assert both[running].status == JobStatus.RUNNING
    assert await lost((1e9, 1e9)) == {}
    assert set(await lost((1e9, 1e9), before=11.0)) == {queued, running}  # admitted at 10
    assert await lost((1e9, 1e9), before=9.0) == {}
    assert await store.inflight(tenant, "text") == 2  # the two leaked slots came back
    assert await store.admit(_id("again"), _record(tenant), max_inflight=4) == Admitted()


async def test_an_empty_in_flight_set_leaves_the_index_and_admission_brings_it_back(store, redis):
    tenant, job = _id("t"), _id("one")
    await store.admit(job, _record(tenant), max_inflight=1)
    assert keys.inflight(tenant, "text").encode() in await redis.smembers(keys.inflight_index())
    await _apply(store, _ev(Completed, job, 0))
    assert await store.inflight(tenant, "text") == 0
    await store.reconcile(0.0, lambda modality: (1e9, 1e9))
    assert keys.inflight(tenant, "text").encode() not in await redis.smembers(keys.inflight_index())
    await store.admit(_id("two"), _record(tenant), max_inflight=1)
    assert keys.inflight(tenant, "text").encode() in await redis.smembers(keys.inflight_index())


async def test_end_lost_is_one_retryable_terminal_and_a_late_real_one_is_dropped(store):
    tenant, job = _id("t"), _id("lost")
    await store.admit(job, _record(tenant), max_inflight=5)
    await _apply(store, _ev(Started, job, 0, attempt=5, worker="w", model=MODEL))
    ended = await store.end_lost(job, "lost: resubmit with the same job_id", now=9.0)
    assert isinstance(ended, Appended)
    assert await store.end_lost(job, "again", now=10.0) == Dropped("after_terminal")
    assert await _apply(store, _ev(Completed, job, 1, attempt=5, text="late")) == Dropped("after_terminal")
    record = await store.load(job)
    assert record.status == JobStatus.FAILED and record.error.code == "job_lost" and record.error.retryable
    assert await store.inflight(tenant, "text") == 0
    assert [e.type for e in await store.entries(job)] == ["started", "failed"]


async def test_end_lost_ends_a_job_the_stream_processors_already_reported_on(store):
    """A prepared job (the preparation processor's `prepared` is seq 1 of source streams) still ends:
    the reconciler's event has a dedupe sequence of its own, never mistaken for a repeat."""
    from schemas.enums import EventSource
    from schemas.events import Prepared

    tenant, job = _id("t"), _id("prepared")
    await store.admit(job, _record(tenant), max_inflight=5)
    prepared = Prepared(job_id=job, seq=1, source=EventSource.STREAMS, stages=["privacy"])
    assert isinstance(await _apply(store, prepared), Appended)
    assert isinstance(await store.end_lost(job, "lost", now=9.0), Appended)
    record = await store.load(job)
    assert record.status == JobStatus.FAILED and record.error.code == "job_lost"
    assert [e.type for e in await store.entries(job)] == ["prepared", "failed"]


async def test_only_one_holder_leads_until_its_lock_expires(store, redis):
    await redis.delete(keys.reconciler_lock())
    assert await store.lead("a", 5) and await store.lead("a", 5)  # taken, then renewed
    assert not await store.lead("b", 5)
    await redis.pexpire(keys.reconciler_lock(), 1)
    await redis.delete(keys.reconciler_lock())  # as after its expiry
    assert await store.lead("b", 5) and not await store.lead("a", 5)


async def test_the_same_request_of_a_lost_job_runs_again_under_its_id(store, redis):
    tenant, job = _id("t"), _id("rerun")
    await store.admit(job, _record(tenant), max_inflight=5)
    await _apply(store, _ev(Started, job, 0, attempt=5, worker="w", model=MODEL))
    await store.end_lost(job, "lost", now=9.0)
    assert await store.admit(job, _record(tenant, "other"), max_inflight=5) == Existing("f1", tenant)
    assert await store.admit(job, _record(_id("t2")), max_inflight=5) == Existing("f1", tenant)
    assert await store.admit(job, _record(tenant), max_inflight=5) == Admitted()
    record = await store.load(job)
    assert record.status == JobStatus.QUEUED and record.error is None and record.slot_held
    assert await store.inflight(tenant, "text") == 1 and await store.entries(job) == []
    assert await redis.hget(keys.dedupe(job), "kept") is None  # the new run's first event pushes its expiry back
    assert await _apply(store, _ev(TokenDelta, job, 1, attempt=5, text="zombie", tokens=1)) == Appended(1, None)
    assert await redis.ttl(keys.replay_log(job)) > 0
    assert await _apply(store, _ev(Started, job, 0, attempt=6, worker="w2", model=MODEL)) == Appended(2, None)
    assert await _apply(store, _ev(Completed, job, 2, attempt=5)) == Dropped("stale_attempt")
    assert isinstance(await _apply(store, _ev(Completed, job, 1, attempt=6, text="ok")), Appended)
    assert (await store.load(job)).status == JobStatus.COMPLETED
    assert await store.admit(job, _record(tenant), max_inflight=5) == Existing("f1", tenant)


async def test_opened_names_the_jobs_whose_replay_log_has_an_entry(store):
    admitted, applied, unknown = _id("op-admitted"), _id("op-applied"), _id("op-unknown")
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    assert await store.admit(admitted, _record(tenant), max_inflight=5) == Admitted()
    assert await store.admit(applied, _record(tenant), max_inflight=5) == Admitted()
    await _apply(store, _ev(Accepted, applied, 0, tenant=tenant, modality=Modality.TEXT))
    assert await store.opened([admitted, applied, unknown]) == {applied}
    assert await store.opened([]) == set()


def _accepted(job: str, tenant: str) -> tuple[Accepted, bytes]:
    event = Accepted(job_id=job, seq=0, source=EventSource.GATEWAY, tenant=tenant, modality=Modality.TEXT)
    return event, event.model_dump_json().encode()


async def test_admission_applies_the_first_event_only_when_it_admits(store, redis):
    """`accepted` in the admission's own call: the log's first entry of a new job, exactly as `apply` writes
    it (a later apply of it is a duplicate); a refusal or a repeat writes nothing."""
    tenant, job, other = _id("t"), _id("first"), _id("full")
    assert await store.admit(job, _record(tenant), max_inflight=1, now=20.0, first=_accepted(job, tenant)) == Admitted()
    [entry] = await store.entries(job)
    assert (entry.id, entry.type) == (1, EventType.ACCEPTED)
    record = await store.load(job)
    assert record.last_event_id == 1 and record.status == JobStatus.QUEUED and record.slot_held
    assert record.updated_at == 20.0
    assert await store.opened([job]) == {job}
    assert await _apply(store, _accepted(job, tenant)[0]) == Dropped("duplicate")
    assert await _apply(store, _ev(Started, job, 0, worker="w", model=MODEL)) == Appended(2, None)

    assert await store.admit(other, _record(tenant), max_inflight=1, first=_accepted(other, tenant)) == Full(1)
    assert await store.load(other) is None
    assert await redis.exists(keys.replay_log(other), keys.dedupe(other)) == 0

    again = _accepted(job, tenant)
    assert await store.admit(job, _record(tenant, "other"), max_inflight=5, first=again) == Existing("f1", tenant)
    assert [e.type for e in await store.entries(job)] == [EventType.ACCEPTED, EventType.STARTED]
    running = 60 + expiry_slack_s(60)  # a running job's keys: pushed back past the expiry, now and then
    assert 0 < await redis.ttl(keys.replay_log(job)) <= running and 0 < await redis.ttl(keys.dedupe(job)) <= running


def _job_keys(job: str) -> tuple[str, str, str]:
    return keys.job_record(job), keys.replay_log(job), keys.dedupe(job)


async def _ttls(redis, job: str) -> list[int]:
    return [await redis.ttl(k) for k in _job_keys(job)]


async def test_a_running_jobs_expiry_is_pushed_back_now_and_then_and_set_exactly_at_its_end(redis):
    """Every key of a job lives at least its expiry after the job's last event, whichever event that
    is; while it runs, its tokens push the expiry back only once the last push is `expiry_slack_s` old."""
    ttl = 3200
    slack = expiry_slack_s(ttl)
    assert slack == 60 and expiry_slack_s(16) == 1 and expiry_slack_s(15) == 0
    store = JobStore(redis, job_ttl_s=ttl, replay_maxlen=100)
    tenant, job = _id("t"), _id("keep")
    await store.admit(job, _record(tenant), max_inflight=5, first=_accepted(job, tenant))
    assert all(ttl < t <= ttl + slack for t in await _ttls(redis, job))  # the first event pushes it back
    for k in _job_keys(job):
        await redis.expire(k, 1000)  # as if the last push were long ago, but within its slack by `kept`
    assert isinstance(await _apply(store, _ev(Started, job, 0, worker="w", model=MODEL)), Appended)
    assert isinstance(await _apply(store, _ev(TokenDelta, job, 1, text="a", tokens=1)), Appended)
    assert all(990 < t <= 1000 for t in await _ttls(redis, job))  # not pushed back: the last push is recent
    seconds, _ = await redis.time()
    await redis.hset(keys.dedupe(job), "kept", seconds - slack)  # by Redis's clock, as the script reads it
    assert isinstance(await _apply(store, _ev(TokenDelta, job, 2, text="b", tokens=1)), Appended)
    assert all(ttl < t <= ttl + slack for t in await _ttls(redis, job))  # a push that old: pushed back
    assert isinstance(await _apply(store, _ev(Completed, job, 3, text="ab")), Appended)
    assert all(ttl - 10 < t <= ttl for t in await _ttls(redis, job))  # the end: exactly the expiry


async def test_a_short_expiry_is_pushed_back_by_every_event(redis):
    store = JobStore(redis, job_ttl_s=10, replay_maxlen=100)  # a slack under a second: none
    tenant, job = _id("t"), _id("short")
    await store.admit(job, _record(tenant), max_inflight=5, first=_accepted(job, tenant))
    for k in _job_keys(job):
        await redis.expire(k, 5)
    assert isinstance(await _apply(store, _ev(Started, job, 0, worker="w", model=MODEL)), Appended)
    assert all(5 < t <= 10 for t in await _ttls(redis, job))


async def test_a_lost_jobs_new_run_starts_its_log_with_the_first_event(store):
    tenant, job = _id("t"), _id("rerun-first")
    assert await store.admit(job, _record(tenant), max_inflight=5, first=_accepted(job, tenant)) == Admitted()
    await _apply(store, _ev(Started, job, 0, attempt=1, worker="w", model=MODEL))
    await store.end_lost(job, "lost", now=9.0)
    assert await store.admit(job, _record(tenant), max_inflight=5, first=_accepted(job, tenant)) == Admitted()
    assert [(e.id, e.type) for e in await store.entries(job)] == [(1, EventType.ACCEPTED)]


async def test_admission_refuses_a_terminal_first_event(store):
    tenant, job = _id("t"), _id("terminal-first")
    failed = Failed(job_id=job, seq=0, source=EventSource.GATEWAY, code=ErrorCode.JOB_LOST, message="no")
    with pytest.raises(ValueError):
        await store.admit(job, _record(tenant), max_inflight=5, first=(failed, failed.model_dump_json().encode()))
    assert await store.load(job) is None
