"""The fault suite's clients: real HTTP clients that submit a steady mixed load through the job API
and follow each job's SSE stream to its terminal event, reconnecting with Last-Event-ID, and count
what every client saw (duplicated or missing entries, output that does not add up).

A client keeps listening until its job's terminal event, a clear error (an answer that says the job
is not there), or until nothing happened for `bound_s`: counted from the latest of its acceptance,
its last event and the stack being whole again (a restarted process can take minutes to load its
model on a busy machine, and a busy machine streams slowly), after which the job counts as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from infra.client import SseParser
from schemas.events import TERMINAL_TYPES

#: the mix, cycled: chat streams most, then images and speech (one video per scenario comes first)
MIX = ("text", "image", "text", "speech", "text")
#: error frames after which the client reconnects (the stream lived its lifetime, the backend was away)
_RECONNECT_CODES = {"deadline_exceeded", "backend_unavailable", "service_unavailable"}


def job_body(kind: str, n: int) -> dict:
    if kind == "text":
        # every scenario sends the same prompts: the semantic cache would answer the later ones at once, and
        # a fault needs streams that are still generating
        return {"modality": "text", "cache": "off",
                "params": {"messages": [{"role": "user", "content": f"Count from {n} upwards."}],
                           "max_tokens": 24, "temperature": 0}}
    if kind == "image":
        return {"modality": "image", "params": {"prompt": f"a red square {n}", "steps": 2, "n": 2, "seed": n}}
    if kind == "speech":
        return {"modality": "speech", "params": {"input": f"Job {n} speaks. It has two sentences."}}
    return {"modality": "video", "params": {"prompt": f"a moving dot {n}", "frames": 4, "steps": 2, "seed": n}}


@dataclass
class Trace:
    """What one client saw of one job."""

    kind: str
    body: dict
    job_id: str = field(default_factory=lambda: "fault-" + uuid.uuid4().hex[:16])
    accepted_at: float | None = None  # monotonic
    last_event_at: float = 0.0
    ended_at: float | None = None
    submit_error: str | None = None  # why it was never accepted
    error: str | None = None  # a clear error instead of a terminal event
    terminals: list[dict] = field(default_factory=list)
    events: list[tuple[int, str, dict]] = field(default_factory=list)
    duplicates: int = 0
    missing: int = 0
    reconnects: int = 0

    @property
    def terminal(self) -> dict | None:
        return self.terminals[0] if self.terminals else None

    def see(self, ident: int, kind: str, data: dict) -> None:
        last = self.events[-1][0] if self.events else 0
        if ident <= last:
            self.duplicates += 1
            return
        self.missing += ident - last - 1  # entry numbers are consecutive from 1
        if any((d.get("source"), d.get("attempt"), d.get("seq")) == (data.get("source"), data.get("attempt"),
                                                                      data.get("seq")) for _, _, d in self.events):
            self.duplicates += 1  # the same event recorded twice under two entry numbers
        self.events.append((ident, kind, data))
        self.last_event_at = time.monotonic()
        if kind in TERMINAL_TYPES:
            self.terminals.append(data)
            self.ended_at = time.monotonic()

    def summary(self) -> dict:
        """The job's findings and the entries its client saw, for the JSON report."""
        return {"job_id": self.job_id, "kind": self.kind, "error": self.error, "duplicates": self.duplicates,
                "missing": self.missing, "output_problems": self.output_problems(), "reconnects": self.reconnects,
                "entries": [(i, kind, d.get("source"), d.get("attempt"), d.get("seq"), d.get("text"))
                            for i, kind, d in self.events]}

    def output_problems(self) -> int:
        """Output of the attempt that completed that does not add up: text deltas that are not the
        completed text, audio chunks or artifacts missing or repeated."""
        end = self.terminal
        if end is None or end.get("type") != "completed":
            return 0
        mine = [(kind, d) for _, kind, d in self.events if d.get("attempt") == end.get("attempt")
                and d.get("source") == end.get("source")]
        if self.kind == "text":
            text = "".join(d["text"] for kind, d in mine if kind == "token")
            return int(text != (end.get("text") or ""))
        if self.kind == "speech":
            chunks = [d["index"] for kind, d in mine if kind == "audio"]
            return int(chunks != list(range(len(chunks))) or not chunks)
        artifacts = sorted(d["index"] for kind, d in mine if kind == "artifact")
        wanted = self.body["params"].get("n", 1)
        return int(artifacts != list(range(wanted)))


class Load:
    """Submits jobs and follows each to its end, every job in a task of its own."""

    def __init__(self, url: str, api_key: str, bound_s: float) -> None:
        self._http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {api_key}"},
                                       timeout=httpx.Timeout(10.0, read=15.0))
        self.bound_s = bound_s
        self.healing = False  # a fault is in place and the stack is not whole yet
        self.healed_at = 0.0  # monotonic: when it was whole again
        self.traces: list[Trace] = []
        self._tasks: list[asyncio.Task] = []

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()

    def deadline(self, since: float) -> float:
        """When a client whose last news came at `since` gives up: `bound_s` after that or after the stack
        was whole again, whichever is later; never while a fault is still in place."""
        return math.inf if self.healing else max(since, self.healed_at) + self.bound_s

    def first_token(self) -> bool:
        return any(kind == "token" for t in self.traces for _, kind, _ in t.events)

    def start(self, kind: str, n: int) -> Trace:
        trace = Trace(kind, job_body(kind, n))
        self.traces.append(trace)
        self._tasks.append(asyncio.create_task(self._run(trace)))
        return trace

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks)

    async def _run(self, trace: Trace) -> None:
        if await self._submit(trace):
            await self._follow(trace)

    async def _submit(self, trace: Trace) -> bool:
        """Accepted (2xx), retrying with the same job_id while the answer says to or none came."""
        started = time.monotonic()
        body = dict(trace.body, job_id=trace.job_id)
        while time.monotonic() < self.deadline(started):
            try:
                response = await self._http.post("/v1/jobs", json=body)
            except httpx.TransportError as exc:
                trace.submit_error = repr(exc)
            else:
                if response.status_code < 300:
                    trace.accepted_at = time.monotonic()
                    return True
                trace.submit_error = f"{response.status_code} {response.text[:300]}"
                if response.status_code < 500 and response.status_code != 429:
                    return False
            await asyncio.sleep(0.5)  # retry pace
        return False

    async def _follow(self, trace: Trace) -> None:
        def news() -> float:
            return max(trace.accepted_at, trace.last_event_at)

        while time.monotonic() < self.deadline(news()) and trace.terminal is None and trace.error is None:
            left = min(self.deadline(news()) - time.monotonic(), 30.0)  # a long wait reconnects
            with contextlib.suppress(httpx.TransportError, asyncio.TimeoutError):
                await asyncio.wait_for(self._stream(trace), max(0.1, left))
            if trace.terminal is None and trace.error is None:
                trace.reconnects += 1
                await asyncio.sleep(0.3)  # reconnect pace

    async def _stream(self, trace: Trace) -> None:
        headers = {"Accept": "text/event-stream"}
        if trace.events:
            headers["Last-Event-ID"] = str(trace.events[-1][0])
        async with self._http.stream("GET", f"/v1/jobs/{trace.job_id}/events", headers=headers) as response:
            if response.status_code >= 400:
                await response.aread()
                if response.status_code < 500 and response.status_code != 429:
                    trace.error = f"{response.status_code} {response.text[:300]}"
                return
            parser = SseParser()
            async for line in response.aiter_lines():
                item = parser.feed(line)
                if item is None:
                    continue
                ident, kind, data = item
                if kind == "error":
                    code = json.loads(data)["error"]["code"]
                    if code not in _RECONNECT_CODES:
                        trace.error = f"error frame {data[:300]}"
                    return
                trace.see(int(ident), kind, json.loads(data))
                if trace.terminal is not None:
                    return


@dataclass
class Row:
    """One scenario's report row."""

    scenario: str
    accepted: int
    ended: int
    completed: int
    failed: int
    clear_errors: int
    lost: int
    duplicates: int
    missing: int
    recover_s: float | None
    not_accepted: int
    rerun: int  # jobs whose client saw more than one `started` (run again after the fault)
    fault_at: float = 0.0  # monotonic: when the fault was injected
    problems: list[dict] = field(default_factory=list)  # what the clients of jobs with a finding saw

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def report(scenario: str, traces: list[Trace], fault_at: float, kinds: tuple[str, ...] = ()) -> Row:
    """The row of one scenario; time to recover counts jobs of `kinds` (every kind when empty)."""
    accepted = [t for t in traces if t.accepted_at is not None]
    ended = [t for t in accepted if t.terminal is not None]
    after = [t.ended_at for t in ended if t.accepted_at > fault_at and t.terminal.get("type") == "completed"
             and (not kinds or t.kind in kinds)]
    return Row(
        scenario=scenario, accepted=len(accepted), ended=len(ended),
        completed=sum(t.terminal.get("type") == "completed" for t in ended),
        failed=sum(t.terminal.get("type") == "failed" for t in ended),
        clear_errors=sum(t.terminal is None and t.error is not None for t in accepted),
        lost=sum(t.terminal is None and t.error is None for t in accepted),
        duplicates=sum(t.duplicates for t in accepted),
        missing=sum(t.missing + t.output_problems() for t in accepted),
        recover_s=round(min(after) - fault_at, 2) if after else None,
        not_accepted=len(traces) - len(accepted),
        rerun=sum(sum(kind == "started" for _, kind, _ in t.events) > 1 for t in accepted),
        fault_at=fault_at,
        problems=[t.summary() for t in accepted if t.terminal is None or t.duplicates or t.missing
                  or t.output_problems() or t.error],
    )


async def drive(load: Load, jobs: int, interval_s: float, fault: Callable[[], Awaitable[None]],
                trigger: Callable[[], bool], trigger_s: float = 60.0) -> float:
    """Submit `jobs` jobs (one video first, then the mix) at a steady pace; once half are submitted and
    `trigger()` holds (or `trigger_s` passed), inject `fault()` while the rest are submitted. Returns
    when the fault was injected (monotonic); the caller waits for the clients. `fault()` returns once
    the stack is whole again (the part it stopped is back and ready)."""
    load.start("video", 0)
    half = max(1, jobs // 2)
    for n in range(1, half):
        load.start(MIX[n % len(MIX)], n)
        await asyncio.sleep(interval_s)
    deadline = time.monotonic() + trigger_s
    while not trigger() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # poll interval
    fault_at = time.monotonic()
    load.healing = True

    async def inject() -> None:
        try:
            await fault()
        finally:
            load.healed_at, load.healing = time.monotonic(), False

    injected = asyncio.create_task(inject())
    for n in range(half, jobs):
        load.start(MIX[n % len(MIX)], n)
        await asyncio.sleep(interval_s)
    await injected
    return fault_at
