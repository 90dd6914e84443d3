"""The video worker against the real broker: in process for progress, MP4 and cancel, and as two
`python -m workers video` processes for a takeover after one of them is killed mid-job."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.blob.local import LocalBlobStore
from infra.kafka.codec import decode_event, encode
from infra.kafka.topics import CONTROL, EVENTS_RAW, jobs_topic
from infra.models.settings import VideoSettings
from infra.models.tiny import build_tiny_video_pipeline
from infra.procs import stop_process
from infra.redis.client import connect
from infra.redis.jobstore import Appended, Dropped, JobStore
from schemas import CancelJob, VideoRequest, parse_request
from schemas.enums import Modality
from schemas.events import TERMINAL_TYPES
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import job_events, read_topic, serving, tail, wait_committed
from workers.runner import jobs_group
from workers.video.encode import probe_mp4
from workers.video.handler import VideoHandler
from workers.video.pipeline import load_tiny_video_pipeline
from workers.wiring import job_runner

pytestmark = pytest.mark.integration
TOPIC = jobs_topic("video")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """A model cache holding the tiny pipeline, built before any worker process reads it."""
    root = tmp_path_factory.mktemp("cache")
    build_tiny_video_pipeline(root / "models" / "tiny-animatediff")
    return root


@pytest.fixture(scope="module")
def tiny_pipeline(cache_dir):
    return load_tiny_video_pipeline(cache_dir / "models" / "tiny-animatediff", device="cpu")


@pytest.fixture(scope="module")
async def blobs(tmp_path_factory):
    return LocalBlobStore(tmp_path_factory.mktemp("blobs"))


@pytest.fixture
async def video_worker(kafka_bootstrap, blobs, tiny_pipeline):
    """One in-process worker per test, so that none is left in the group for the takeover test."""
    handler = VideoHandler(lambda: tiny_pipeline, blobs, VideoSettings(steps=3, frames=8))
    async with serving(job_runner(handler, bootstrap=kafka_bootstrap, **FAST_GROUP)) as (runner,):
        yield runner


def video(job_id: str, **params) -> VideoRequest:
    return parse_request({"job_id": job_id, "tenant": "t1", "modality": "video",
                          "params": {"prompt": "a boat on a lake", **params}})


async def submit(producer, req: VideoRequest):
    """Send the job; returns where it landed."""
    return await producer.send_and_wait(TOPIC, encode(req), key=req.key.encode())


def progressed(job_id: str):
    def until(messages) -> bool:
        return any(m.key == job_id.encode() and json.loads(m.value)["type"] == "progress" for m in messages)
    return until


async def test_job_streams_progress_per_step_and_a_decodable_mp4(kafka_bootstrap, video_worker, producer, blobs):
    await submit(producer, video("vid-ok", width=48, height=32, fps=8, seed=1))  # 8 frames, 3 steps
    events = await job_events(kafka_bootstrap, EVENTS_RAW, "vid-ok")
    types = [e.type for e in events]
    assert types == ["started", "progress", "progress", "progress", "artifact", "completed"]
    assert [(e.step, e.total) for e in events if e.type == "progress"] == [(1, 3), (2, 3), (3, 3)]
    assert events[0].model.random_weights is True
    art = events[-2]
    data = await blobs.get("artifacts/t1/vid-ok/video.mp4")
    assert (art.mime_type, art.bytes, art.width, art.height, art.frames) == ("video/mp4", len(data), 48, 32, 8)
    assert art.duration_s == pytest.approx(1.0)
    info = probe_mp4(data)
    assert (info.frames, info.width, info.height, info.codec) == (8, 48, 32, "h264")
    assert info.duration_s == pytest.approx(1.0)
    assert (events[-1].usage.frames, events[-1].usage.steps) == (8, 3)


async def test_bad_frames_fail_with_a_code(kafka_bootstrap, video_worker, producer):
    await submit(producer, video("vid-frames", frames=200))
    events = await job_events(kafka_bootstrap, EVENTS_RAW, "vid-frames")
    assert [e.type for e in events] == ["failed"]
    assert events[0].code.value == "invalid_parameter" and "frames" in events[0].message


async def test_cancel_mid_job_ends_with_one_cancelled_and_fewer_steps(kafka_bootstrap, video_worker, producer):
    steps = 60
    sent = await submit(producer, video("vid-cancel", width=64, height=64, frames=16, steps=steps))
    await read_topic(kafka_bootstrap, EVENTS_RAW, until=progressed("vid-cancel"), timeout=60)
    await producer.send_and_wait(CONTROL, encode(CancelJob(job_id="vid-cancel", tenant="t1", reason="stop")),
                                 key=b"vid-cancel")
    events = await job_events(kafka_bootstrap, EVENTS_RAW, "vid-cancel",
                              after_commit=(jobs_group(Modality.VIDEO), sent))
    terminals = [e for e in events if e.type in TERMINAL_TYPES]
    assert [(t.type, t.reason) for t in terminals] == [("cancelled", "stop")]
    assert 0 < sum(e.type == "progress" for e in events) < steps
    assert not any(e.type == "artifact" for e in events)


# -- takeover --------------------------------------------------------------------------------------

TAKEOVER_STEPS = 30


def _assigned(log: Path) -> bool:
    """The worker's latest partition assignment is not empty."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if " assigned [" in ln]
    return bool(lines) and not lines[-1].rstrip().endswith("assigned []")


async def _wait_for_group(procs: dict[int, subprocess.Popen], logs: dict[int, Path], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, proc in procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"worker {pid} exited with {proc.returncode}:\n{logs[pid].read_text()[-3000:]}")
        if all(_assigned(log) for log in logs.values()):
            return
        await asyncio.sleep(0.2)
    tails = "\n".join(log.read_text()[-1500:] for log in logs.values())
    raise AssertionError(f"the two workers did not share the partitions within {timeout}s:\n{tails}")


async def _fanout_outcomes(redis_url: str, messages, *, fresh: bool = False) -> list:
    """Feed the job's messages, in log order, through the fan-out's dedupe script on a real Redis."""
    # database 15: the session's streams process may already have fanned these events out in db 0
    client = connect(redis_url.rsplit("/", 1)[0] + "/15")
    try:
        if fresh:
            await client.flushdb()
        store = JobStore(client, replay_maxlen=1000, job_ttl_s=600)
        outcomes = []
        for m in messages:
            event = decode_event(m.value)
            outcomes.append((event, await store.apply(event, m.value, time.time())))
        return outcomes
    finally:
        await client.aclose()


async def test_killed_worker_job_is_taken_over_and_completed_by_the_other(
        kafka_bootstrap, redis_url, cache_dir, producer, tmp_path):
    job_id = "vid-takeover"
    blob_dir = tmp_path / "blobs"
    env = dict(
        os.environ,
        GENLOOM_KAFKA_BOOTSTRAP=kafka_bootstrap,
        GENLOOM_KAFKA_SESSION_TIMEOUT_MS="2000",
        GENLOOM_KAFKA_HEARTBEAT_INTERVAL_MS="500",
        GENLOOM_BLOB_DIR=str(blob_dir),
        GENLOOM_CACHE_DIR=str(cache_dir),
        GENLOOM_WORKER_TORCH_THREADS="1",
        # worker defaults that make the job run a few seconds on one thread
        # the tiny random pipeline, slower a step than the default (trained) model
        GENLOOM_VIDEO_MODEL=str(cache_dir / "models" / "tiny-animatediff"),
        GENLOOM_VIDEO_WIDTH="64",
        GENLOOM_VIDEO_HEIGHT="64",
        GENLOOM_VIDEO_FRAMES="16",
        GENLOOM_VIDEO_STEPS=str(TAKEOVER_STEPS),
    )
    procs: dict[int, subprocess.Popen] = {}
    logs: dict[int, Path] = {}
    try:
        for i in range(2):
            log_path = tmp_path / f"worker-{i}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen([sys.executable, "-m", "workers", "video"], cwd=REPO, env=env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            procs[proc.pid], logs[proc.pid] = proc, log_path
        await _wait_for_group(procs, logs, timeout=90)

        # what the workers publish (genloom.events.raw, moderation being on), not what a gate the session may
        # or may not run forwards; tailed from before the submit, so the kill follows the first progress
        # within a poll (read from the beginning of a session's topic, a fast CPU finished the job first)
        async with tail(kafka_bootstrap, EVENTS_RAW) as events_since:
            sent = await submit(producer, video(job_id, seed=3))  # size, frames and steps: the workers' defaults
            seen = await events_since(progressed(job_id), timeout=60)
            first = [decode_event(m.value) for m in seen if m.key == job_id.encode()]
            started = [e for e in first if e.type == "started"][-1]
            victim = int(started.worker.rsplit("-", 1)[1])
            assert victim in procs, f"{started.worker} is not one of the workers {sorted(procs)}"
            os.kill(victim, signal.SIGKILL)
        procs[victim].wait(10)

        def ended(messages) -> bool:
            return any(m.key == job_id.encode() and json.loads(m.value)["type"] in TERMINAL_TYPES
                       for m in messages)

        await read_topic(kafka_bootstrap, EVENTS_RAW, until=ended, timeout=90)
        # the survivor commits the job only once all its events are acknowledged; the victim is dead
        await wait_committed(kafka_bootstrap, jobs_group(Modality.VIDEO), sent)
        messages = await read_topic(kafka_bootstrap, EVENTS_RAW, until=ended, timeout=30)
        mine = [m for m in messages if m.key == job_id.encode()]
        events = [decode_event(m.value) for m in mine]

        old = [e for e in events if e.attempt == started.attempt]
        newer = [e for e in events if e.attempt > started.attempt]
        assert not any(e.type in TERMINAL_TYPES for e in old), "the killed attempt emitted a terminal event"
        assert 0 < sum(e.type == "progress" for e in old) < TAKEOVER_STEPS
        terminals = [e for e in events if e.type in TERMINAL_TYPES]
        assert len(terminals) == 1 and terminals[0].type == "completed", terminals
        final = terminals[0].attempt
        assert final > started.attempt
        restart = [e for e in newer if e.type == "started"]
        assert [e.attempt for e in restart] == [final]
        assert restart[0].worker != started.worker
        survivor = int(restart[0].worker.rsplit("-", 1)[1])
        assert survivor in procs and survivor != victim and procs[survivor].poll() is None
        final_events = [e for e in events if e.attempt == final]
        # each source numbers its own events (the gate adds its verdict on the clip and releases the end as its own)
        for source in {e.source for e in final_events}:
            seqs = [e.seq for e in final_events if e.source == source]
            assert seqs == list(range(len(seqs))), source
        assert sum(e.type == "progress" for e in final_events) == TAKEOVER_STEPS
        assert sum(e.type in TERMINAL_TYPES for e in final_events) == 1

        data = await LocalBlobStore(blob_dir).get(f"artifacts/t1/{job_id}/video.mp4")
        info = probe_mp4(data)
        assert (info.frames, info.width, info.height) == (16, 64, 64)
        assert info.duration_s == pytest.approx(2.0)

        # What clients see: the fan-out's dedupe keeps exactly one terminal, the new attempt's,
        # and a late redelivery of the killed attempt's events is dropped.
        outcomes = await _fanout_outcomes(redis_url, mine, fresh=True)
        kept_terminals = [e for e, r in outcomes if isinstance(r, Appended) and e.type in TERMINAL_TYPES]
        assert [(e.type, e.attempt) for e in kept_terminals] == [("completed", final)]
        late = next(m for m in mine if decode_event(m.value).attempt == started.attempt)
        [(_, again)] = await _fanout_outcomes(redis_url, [late])
        assert isinstance(again, Dropped)
    finally:
        for proc in procs.values():
            stop_process(proc, timeout=10)
