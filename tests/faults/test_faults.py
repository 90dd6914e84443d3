"""Faults injected into a live stack under a steady mixed load: every accepted job whose client keeps
listening ends in exactly one terminal event, and no client sees an entry twice or misses one.

The scenarios share one stack and run in this order; each leaves the stack whole for the next.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.faults.conftest import BOUND_S, INTERVAL_S, JOBS, OUTAGE_S
from tests.faults.load import Load, drive, report

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(600)]


async def _scenario(name, stack, add_row, fault, kinds=()):
    load = Load(stack.url, stack.api_key, BOUND_S)
    try:
        fault_at = await drive(load, JOBS, INTERVAL_S, fault, load.first_token)
        await load.wait()
    finally:
        await load.aclose()
    row = report(name, load.traces, fault_at, kinds)
    add_row(row)
    accepted = [t for t in load.traces if t.accepted_at is not None]
    assert accepted, [t.submit_error for t in load.traces]
    return row, accepted


def _outage(stop, start):
    """The fault: `stop` now, `start` after the outage, both blocking calls run off the loop."""

    async def fault() -> None:
        await asyncio.to_thread(stop)
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(start)

    return fault


def _assert_whole(row, accepted) -> None:
    """Every client got exactly one terminal event, nothing twice, nothing missing."""
    assert row.lost == 0, [(t.job_id, t.kind, t.events[-3:]) for t in accepted if t.terminal is None]
    assert row.clear_errors == 0, [(t.job_id, t.error) for t in accepted if t.error]
    assert row.duplicates == 0 and row.missing == 0, [
        (t.job_id, t.kind, t.duplicates, t.missing, t.output_problems()) for t in accepted
        if t.duplicates or t.missing or t.output_problems()]
    assert all(len(t.terminals) == 1 for t in accepted)


async def test_text_worker_killed_mid_stream(fault_stack, fault_report):
    row, accepted = await _scenario(
        "text worker SIGKILL mid-stream", fault_stack, fault_report,
        _outage(lambda: fault_stack.kill("worker-text"), lambda: fault_stack.relaunch("worker-text", wait=True)),
        kinds=("text",))
    _assert_whole(row, accepted)
    assert row.completed == row.accepted  # the relaunched worker runs the killed one's jobs again
    assert row.rerun >= 1, "no job was cut mid-stream: the fault missed the load"


async def test_streams_process_killed(fault_stack, fault_report):
    row, accepted = await _scenario(
        "streams process SIGKILL", fault_stack, fault_report,
        _outage(lambda: fault_stack.kill("streams"), lambda: fault_stack.relaunch("streams", wait=True)))
    _assert_whole(row, accepted)
    assert row.completed == row.accepted


async def test_gateway_restarted(fault_stack, fault_report):
    row, accepted = await _scenario(
        "gateway restart", fault_stack, fault_report,
        _outage(lambda: fault_stack.kill("gateway"), lambda: fault_stack.relaunch("gateway", wait=True)))
    _assert_whole(row, accepted)
    assert row.completed == row.accepted
    assert any(t.reconnects for t in accepted), "no client was cut off: the fault missed the load"


async def test_broker_paused_and_resumed(fault_stack, fault_report):
    row, accepted = await _scenario(
        "broker SIGSTOP/SIGCONT", fault_stack, fault_report,
        _outage(lambda: fault_stack.signal_broker(signal.SIGSTOP),
                lambda: fault_stack.signal_broker(signal.SIGCONT)))
    _assert_whole(row, accepted)
    assert row.completed == row.accepted


async def test_redis_killed_and_restarted(fault_stack, fault_report):
    """Redis keeps nothing on disk: records and events of jobs accepted before the restart are gone. The
    rule: a client of such a job gets exactly one terminal event (a job that ends after the restart: a
    retryable `failed`, backend_unavailable, since its outcome cannot be told) or, connecting after the
    loss, a clear 404; never an endless stream, nor a stream with entries skipped."""
    row, accepted = await _scenario(
        "redis SIGKILL + restart (empty)", fault_stack, fault_report,
        _outage(fault_stack.kill_redis, fault_stack.start_redis))
    assert row.lost == 0, [(t.job_id, t.kind, t.events[-3:]) for t in accepted if t.terminal is None and not t.error]
    assert row.duplicates == 0 and row.missing == 0, row.problems
    for t in accepted:
        if t.terminal is None:
            assert t.error.startswith("404"), t.error
        else:
            assert len(t.terminals) == 1
            assert t.terminal["type"] == "completed" or (
                t.terminal["retryable"] and t.terminal["code"] == "backend_unavailable"), t.terminal
    assert row.recover_s is not None, "no job accepted after the restart completed"


async def test_broker_killed_and_replaced(fault_stack, fault_report):
    """The bundled broker keeps everything in memory: a new one on the same port has empty topics. Every
    accepted job whose client keeps listening ends: completed, or failed with retryable=true. Nothing is
    seen twice; events the dead broker acknowledged and nobody had read yet may be missing (the CI of
    4470acc saw one chat's started and first six tokens gone), never the terminal event.

    The video worker is frozen meanwhile, so its job is still queued on the broker when the broker dies
    (the other workers read ahead: what they fetched survives in their memory)."""
    fault_stack.signal("worker-video", signal.SIGSTOP)

    def replace() -> None:
        fault_stack.start_broker()
        fault_stack.signal("worker-video", signal.SIGCONT)

    try:
        row, accepted = await _scenario("broker SIGKILL + new broker (empty)", fault_stack, fault_report,
                                        _outage(fault_stack.kill_broker, replace))
    finally:
        fault_stack.signal("worker-video", signal.SIGCONT)
    assert row.lost == 0 and row.clear_errors == 0, [(t.job_id, t.kind, t.error) for t in accepted if not t.terminal]
    assert row.duplicates == 0
    for t in accepted:
        assert len(t.terminals) == 1
        assert t.terminal["type"] == "completed" or (t.terminal["type"] == "failed" and t.terminal["retryable"])
    # The one fault where acknowledged events may be gone: a worker's events that the dead broker had
    # acknowledged but nobody had read yet died with its memory (a replicated cluster keeps them). A
    # client with such a gap still got its terminal event, and a completed chat's event carries its whole text.
    for t in accepted:
        if t.missing:
            assert t.accepted_at < row.fault_at, t.summary()  # only what was under way when the broker died
            if t.kind == "text" and t.terminal["type"] == "completed":
                assert t.terminal.get("text"), t.summary()
