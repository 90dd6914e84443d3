"""The local stack: broker, Redis and genloom's processes on loopback, stopped by PID.

`genloom up` and the end-to-end tests both run it, so what the tests exercise is what users run.

A bundled broker or redis-server that exits is started again on its port (`revive_backends`).
Both keep everything in memory. After a broker restart every job accepted before it that had not
ended is ended with a retryable `failed` (job_lost), through the same script as every event: its
request is gone from the log, and genloom keeps no copy of requests in Redis (they may hold
personal data), so it cannot be re-published; its owner resubmits the same request under the same
job_id. After a redis-server restart, job records, replay logs and in-flight slots are gone: a
client following a job gets an error instead of waiting (docs/architecture.md).

The bundled broker also reads a partition from its first record batch at every fetch (about 0.5 us a
batch here), and a fetch whose read outlasts the fetch's wait comes back empty: the broker's CPU grows
with every batch a partition holds (a worker sends each token event alone, so a batch each;
bench/broker_batches.py), and past about 10,000 at the streams process's 5 ms wait (fewer on a busy
CPU) the end of the partition is never served: its consumers fetch in a loop and its jobs hang
(bench/broker_batches.py, part 2). `recycle_full_broker` restarts it, emptied, well before
that while nothing is in flight, or at `recycle_force_batches` whatever is.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.kafka.admin import end_offsets, fullest_partition, lagging_groups
from infra.kafka.broker import LocalBroker
from infra.kafka.clients import ensure_topics
from infra.kafka.topics import catalogue
from infra.procs import free_port, log_file, port_taken, stop_process, wait_for_port
from infra.redis.client import connect
from infra.redis.jobstore import Appended, JobStore, event_store
from infra.redis.server import LocalRedis
from infra.settings.moderation import ModerationSettings, moderation_enabled
from infra.settings.streams import FanoutSettings, WebhookSettings

#: what the owner of a job a restarted bundled broker lost is told
BROKER_LOST = (
    "the bundled event log restarted and lost this job's request (it keeps everything in memory):"
    " resubmit the same request with the same job_id to run it again"
)


#: why a full partition of the bundled broker matters, for the user
_FILLS = "it slows with every batch and stops serving a partition's end at about 10,000, fewer on a busy CPU"


async def jobs_in_flight(redis_url: str) -> int:
    redis = connect(redis_url)
    try:
        return await JobStore(redis).inflight_total()
    finally:
        await redis.aclose()


async def end_jobs_lost_by_the_broker(redis_url: str, before: float) -> list[str]:
    """End every job admitted before `before` that has not ended (their requests were in the
    broker's memory), each with one retryable `failed`; the ids ended."""
    redis = connect(redis_url)
    try:
        store = event_store(redis, FanoutSettings(), WebhookSettings())
        ended = []
        never_silent = (1e18, 1e18)  # only the admission time counts here
        for held in (await store.reconcile(time.time(), lambda _: never_silent, admitted_before=before)).lost:
            if isinstance(await store.end_lost(held.job_id, BROKER_LOST, time.time()), Appended):
                ended.append(held.job_id)
        return ended
    finally:
        await redis.aclose()


@dataclass
class Component:
    """One process of the stack."""

    name: str
    argv: list[str]
    port: int | None = None  # a port it listens on, for readiness
    proc: subprocess.Popen | None = None
    #: where its /metrics is served (the gateway serves it on `port`)
    metrics_port: int | None = None
    restarts: int = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def thread_plan(env: dict[str, str], name: str, cores: int) -> dict[str, str]:
    """`env` with the CPU threads of one stack process, where its user set none: a generation worker
    (`worker-<modality>`) runs torch on all cores but one, left to the stack's other processes (gateway,
    stream processors, gate, broker), which run one thread each. On 2 cores two engine threads beside
    the stack ran at half the speed of one (docs/benchmarks.md, text serving against its peer)."""
    env = dict(env)
    if name.startswith("worker-"):
        env.setdefault("GENLOOM_WORKER_TORCH_THREADS", str(max(1, cores - 1)))
        env.setdefault("OMP_NUM_THREADS", env["GENLOOM_WORKER_TORCH_THREADS"])
    else:
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


@dataclass
class Stack:
    bootstrap: str | None = None
    redis_url: str | None = None
    log_dir: Path = field(default_factory=lambda: Path.home() / ".genloom" / "logs")
    env: dict[str, str] = field(default_factory=dict)
    partitions: int = 8
    job_partitions: int = 4
    broker: LocalBroker | None = None
    redis: LocalRedis | None = None
    components: list[Component] = field(default_factory=list)
    #: when the bundled broker was found exited (or restarted full), until its restart is complete
    broker_lost_at: float | None = None
    #: restart the bundled broker once a partition of its topics holds this many record batches and no job
    #: is in flight (0: never; `recycle_full_broker`), and at `recycle_force_batches` whatever is in flight
    recycle_batches: int = 0
    recycle_force_batches: int = 0
    #: how often `recycle_full_broker` looks (seconds)
    fill_check_s: float = 10.0
    _next_fill_check: float = field(default=0.0, repr=False)
    _fill_told: bool = field(default=False, repr=False)

    def start_backends(self) -> None:
        """Start the bundled broker and a redis-server unless external ones are configured."""
        if not self.bootstrap:
            self.broker = LocalBroker(log=log_file(self.log_dir, "broker")).start()
            self.bootstrap = self.broker.bootstrap
        if not self.redis_url:
            self.redis = LocalRedis(log=log_file(self.log_dir, "redis")).start()
            self.redis_url = self.redis.url
        asyncio.run(ensure_topics(self.bootstrap, catalogue(self.partitions, self.job_partitions)))

    def revive_backends(self) -> list[str]:
        """Start a bundled broker or redis-server that exited again, on its port; a line per restart for the user.

        A restart that fails is tried again at the next call (the components reconnect meanwhile).
        """
        said: list[str] = []
        if self.redis is not None and self.redis.crashed:
            self.redis.start()
            said.append(f"redis-server exited; restarted on {self.redis_url}: the job records, replay logs"
                        " and in-flight slots it held in memory are gone")
        if self.broker is not None and self.broker.crashed:
            if self.broker_lost_at is None:
                self.broker_lost_at = time.time()
            self.broker.start()
        if self.broker_lost_at is not None:  # until topics are back and the lost jobs ended, however many calls
            ended = self._restore_topics()
            said.append(f"the bundled broker exited; restarted on {self.bootstrap} with its topics; {len(ended)}"
                        " job(s) it held ended with a retryable failed event (job_lost)")
        return said

    def _restore_topics(self) -> list[str]:
        """After the bundled broker restarted empty: its topics again, and every job admitted before it
        ended (`end_jobs_lost_by_the_broker`); the ids ended."""
        # a component that reconnected first may have auto-created a topic with the broker's default count
        asyncio.run(ensure_topics(self.bootstrap, catalogue(self.partitions, self.job_partitions),
                                  recreate_mismatched=True))
        ended = asyncio.run(end_jobs_lost_by_the_broker(self.redis_url, self.broker_lost_at)) if self.redis_url else []
        self.broker_lost_at = None
        return ended

    def recycle_full_broker(self) -> list[str]:
        """Restart the bundled broker, emptied, long before one of its partitions holds so many record
        batches that its end is no longer served (the module docstring); a line for the user when it does,
        or will.

        At most once per `fill_check_s`, the fullest partition of the stack's topics is read (its end
        offset bounds its batches from above). From `recycle_batches` on, the broker is restarted as soon as
        no job is in flight and no consumer group has records of it left to read (the memory writer, say,
        reads a job's end after the job ended): genloom's state of record (job records, replay logs, memory)
        is in Redis and the stores then, so nothing a client can ask for is lost. Until then the user is
        told once. From `recycle_force_batches` on it is restarted even so: the jobs in flight end with a
        retryable `failed` (job_lost), as after a crash, instead of hanging on a partition nobody can read.
        Nothing happens with an external Kafka, or when `recycle_batches` is 0."""
        if (self.broker is None or not self.recycle_batches or self.broker_lost_at is not None
                or self.broker.crashed):
            return []
        now = time.monotonic()
        if now < self._next_fill_check:
            return []
        self._next_fill_check = now + self.fill_check_s
        partitions = {spec.name: spec.partitions for spec in catalogue(self.partitions, self.job_partitions)}
        ends = asyncio.run(end_offsets(self.bootstrap, partitions))
        tp, batches = fullest_partition(ends)
        if batches < self.recycle_batches:
            self._fill_told = False
            return []
        where = f"{tp.topic}[{tp.partition}] holds {batches} record batches"
        forced = bool(self.recycle_force_batches) and batches >= self.recycle_force_batches
        if not forced:
            held = asyncio.run(jobs_in_flight(self.redis_url)) if self.redis_url else 0
            behind = [] if held else asyncio.run(lagging_groups(self.bootstrap, ends))
            if held or behind:
                if self._fill_told:
                    return []
                self._fill_told = True
                waiting = f"{held} job(s) are in flight" if held else f"{', '.join(behind)} still read"
                return [f"the bundled broker's {where} ({_FILLS}): it restarts,"
                        f" emptied, once no job is in flight and every consumer has read what it holds ({waiting});"
                        " for long runs use a Kafka cluster (GENLOOM_KAFKA_BOOTSTRAP)"]
        self._fill_told = False
        self.broker.stop()
        # a job admitted until now may have been published to the broker just stopped (it ends as lost);
        # one admitted from now on is published to the restarted broker (the gateway's producer retries)
        self.broker_lost_at = time.time()
        self.broker.start()
        ended = self._restore_topics()
        return [f"the bundled broker's {where} ({_FILLS}): restarted it, emptied,"
                f" on {self.bootstrap}" + (f"; {len(ended)} job(s) in flight ended with a retryable failed event"
                                           " (job_lost)" if ended else ", with no job in flight")]

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env["GENLOOM_KAFKA_BOOTSTRAP"] = self.bootstrap or ""
        env["GENLOOM_REDIS_URL"] = self.redis_url or ""
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def add(self, name: str, module_argv: list[str], port: int | None = None) -> Component:
        component = Component(name, [sys.executable, "-m", *module_argv], port,
                              metrics_port=None if port is not None else self._free_port())
        self.components.append(component)
        return component

    def _free_port(self) -> int:
        """A free loopback port that no process of this stack was given: the ports are picked before the
        processes bind them, and two picks in a row may get the same one (a worker and the moderation gate
        once did, and the gate, unable to serve its /metrics, exited at every restart)."""
        given = {p for c in self.components for p in (c.port, c.metrics_port) if p is not None}
        while (port := free_port()) in given:
            pass
        return port

    def relaunch(self, component: Component) -> str | None:
        """Start an exited component again, its /metrics on a new port if another process holds its own
        now; a line saying so, if it moved."""
        component.restarts += 1
        moved = None
        if component.metrics_port is not None and port_taken(component.metrics_port):
            old, component.metrics_port = component.metrics_port, self._free_port()
            moved = (f"{component.name}'s port {old} is taken: its metrics move to "
                     f"http://127.0.0.1:{component.metrics_port}/metrics")
        self.launch(component)
        return moved

    def moderated(self) -> bool:
        """Whether moderation is on for this stack's processes (their environment, `env` included)."""
        prefix = "GENLOOM_MODERATION_"
        overrides = {k[len(prefix):].lower(): v for k, v in self.env.items() if k.startswith(prefix)}
        return moderation_enabled(ModerationSettings(**overrides))

    def add_core(self) -> dict[str, str]:
        """The processes every stack runs besides the workers and the gateway: the stream processors
        and, unless moderation is off, the moderation gate (with moderation on, workers publish to
        genloom.events.raw and only the gate releases their output). What is off, and why."""
        self.add("streams", ["streams"])
        if not self.moderated():
            return {"moderation": "off: GENLOOM_MODERATION_CLASSIFIER=none, so prompts and output go unchecked"}
        self.add("moderation", ["workers", "moderation"])
        return {}

    def launch(self, component: Component) -> None:
        env = thread_plan(self.child_env(), component.name, os.cpu_count() or 1)
        if component.metrics_port is not None:
            env["GENLOOM_METRICS_PORT"] = str(component.metrics_port)
        component.proc = subprocess.Popen(
            component.argv,
            env=env,
            stdout=log_file(self.log_dir, component.name),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def start(self, ready_timeout: float = 120.0) -> None:
        """Launch every component and wait for those that listen; when one does not come up, everything
        started (the backends included) is stopped before the error is raised."""
        try:
            for component in self.components:
                self.launch(component)
            deadline = time.monotonic() + ready_timeout
            for component in self.components:
                if component.port is not None:
                    wait_for_port(component.port, max(1.0, deadline - time.monotonic()), component.proc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for component in reversed(self.components):
            if component.proc is not None:
                stop_process(component.proc, timeout=10)
        if self.redis is not None:
            self.redis.stop()
        if self.broker is not None:
            self.broker.stop()

    def dead(self) -> list[Component]:
        return [c for c in self.components if c.proc is not None and c.proc.poll() is not None]
