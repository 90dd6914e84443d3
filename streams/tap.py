"""Taps: plain consumer groups that run beside the faust app in the streams process.

The fan-out, the cache filler and the memory writer read every event of `genloom.events` (a token
each, most of them) and do little with most. Through faust, each event was delivered to each of
them as a stream event of its own (about 0.6 ms of CPU per event in all here), so a decode step of
100 streams queued for tens of ms before the fan-out reached Redis. A tap polls a batch with one
`getmany`, hands each partition's records to its handler at once, and commits behind it.

Each tap is a consumer group of its own: the fan-out never waits for the memory writer, which holds
its place until a failing store answers, and a consumer that falls behind is seen as its group's lag.
A group that has committed nothing starts where the faust app's group (which ran these consumers
before) stands, else at the topic's start (every consumer here is idempotent: a replay writes
nothing twice), so no event is skipped by the move.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from infra.kafka import clients
from infra.kafka.consume import COMMIT_GAP_S, ConsumeLoop, FlushOnRevoke, Record
from infra.kafka.doorbell import space_fetches
from infra.settings.streams import StreamsSettings

log = logging.getLogger(__name__)


class TapHandler:
    """What a tap feeds (subclass it). Built and opened inside the running loop (its clients need one)."""

    #: a started producer for dead letters (an empty message; whatever the handler finds malformed), or None
    dead_letters: Any = None

    async def open(self) -> None:
        pass

    async def handle(self, records: list[Record[bytes]]) -> None:
        """What one poll brought, every partition's records in order (each names its partition); they
        are done (committed behind) when this returns."""
        raise NotImplementedError

    async def close(self) -> None:
        pass


@dataclass(frozen=True)
class TapSpec:
    """A tap to run: its name, its topics, and how its handler is built (given the tap's group, the
    app id and the name: processes of one app share each tap's work, as they share faust's)."""

    name: str
    topics: list[str]
    handler: Callable[[str], TapHandler]
    batch_max: int = 256
    #: a background tap fetches at most once per this interval (infra.kafka.doorbell.space_fetches); 0: eagerly
    fetch_gap_s: float = 0.0


def raw(value: bytes) -> bytes:
    """A tap's records carry the message value as sent; its handler reads what it needs."""
    return value


class Tap:
    """One consumer group on `topics`: batches to `handle`, commits behind (see ConsumeLoop)."""

    def __init__(self, group: str, topics: list[str], handler: TapHandler, *, bootstrap: str,
                 settings: StreamsSettings, batch_max: int = 256, legacy_group: str | None = None,
                 fetch_gap_s: float = 0.0) -> None:
        self.group = group
        self._fetch_gap_s = fetch_gap_s
        self._topics = topics
        self._handler = handler
        self._bootstrap = bootstrap
        self._legacy_group = legacy_group
        #: where each partition this process has read starts: the faust group's position for one this
        #: group never committed (records below it, fetched from the reset position before the seek took
        #: effect, are passed over and committed past), else None
        self._floor: dict[Hashable, int | None] = {}
        self._consumer = clients.consumer(
            bootstrap, group_id=group, client_id=group, fetch_max_wait_ms=settings.fetch_max_wait_ms,
            session_timeout_ms=int(settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(settings.heartbeat_s * 1000), max_poll_records=batch_max,
            max_message_bytes=settings.max_message_bytes)
        self.loop = ConsumeLoop(self._consumer, decode=raw, expected="message", group=group, on_poll=self._poll,
                                dead_letters=handler.dead_letters, commit_behind=True, commit_gap_s=COMMIT_GAP_S)

    async def _poll(self, records: list[Record[bytes]]) -> None:
        if {r.tp for r in records} - self._floor.keys():  # placed once, every assigned partition together
            new = ({r.tp for r in records} | set(self._consumer.assignment())) - self._floor.keys()
            self._floor.update(await self._starts(new))
        floors = self._floor
        mine = [r for r in records if (floors[r.tp] or 0) <= r.offset]
        if mine:
            await self._handler.handle(mine)
        offsets: dict[Hashable, list[int]] = {}
        for r in records:
            offsets.setdefault(r.tp, []).append(r.offset)
        for tp, done in offsets.items():
            await self.loop.done(tp, *done)

    async def run(self) -> None:
        """Join the group and consume until cancelled; then commit what was applied and leave."""
        try:
            await self._handler.open()
            self._consumer.subscribe(self._topics, listener=FlushOnRevoke(self.loop))
            await clients.start_client(self._consumer, self._bootstrap)
            if self._fetch_gap_s:
                space_fetches(self._consumer, self._fetch_gap_s)
            try:
                await self.loop.run()
            finally:
                self.loop.stop()
                await self.loop.flush()
        finally:
            await self._consumer.stop()  # idempotent; also when the handler never opened
            await self._handler.close()

    async def _starts(self, tps: set) -> dict[Hashable, int | None]:
        """Per partition, the faust group's position where this group has no commit (and seek there);
        None elsewhere. One admin client for all of them."""
        starts: dict[Hashable, int | None] = dict.fromkeys(tps)
        if self._legacy_group is None:
            return starts
        fresh = [tp for tp in tps if await self._consumer.committed(tp) is None]
        if not fresh:
            return starts
        try:
            admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, **clients.security_args())
            await clients.start_client(admin, self._bootstrap)
            try:
                theirs = await admin.list_consumer_group_offsets(self._legacy_group, partitions=fresh)
            finally:
                await admin.close()
        except Exception as exc:  # the reset policy applies: the topic's start, replayed without effect
            log.warning("%s: the faust group's offsets could not be read (%s); reading from the topic's start",
                        self.group, exc)
            return starts
        for tp, meta in theirs.items():
            if meta is not None and meta.offset >= 0:
                starts[tp] = meta.offset
                self._consumer.seek(tp, meta.offset)
                log.info("%s: %s starts at %d, where %s stood", self.group, tp, meta.offset, self._legacy_group)
        return starts


def register(app, specs: list[TapSpec], *, bootstrap: str, settings: StreamsSettings) -> None:
    """Run `specs` as one task of the faust app; a tap that fails stops the process (its supervisor
    restarts it, and the uncommitted records are read again) instead of leaving it up without them."""
    if not specs:
        return

    @app.task
    async def taps() -> None:
        groups = [f"{settings.app_id}-{s.name}" for s in specs]
        running = [Tap(group, s.topics, s.handler(group), bootstrap=bootstrap, settings=settings,
                       batch_max=s.batch_max, legacy_group=settings.app_id, fetch_gap_s=s.fetch_gap_s)
                   for group, s in zip(groups, specs)]
        try:
            await asyncio.gather(*(tap.run() for tap in running))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.critical("a tap failed (%s: %s): stopping this process", type(exc).__name__, exc)
            await app.crash(exc)
            raise
