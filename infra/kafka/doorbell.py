"""Idle consumers that cost nothing and still pick work up at once: polls that back off, a doorbell.

The bundled broker never wakes a long poll early, so consumers fetch with a 10 ms wait; idle, every
consumer of every process then sends a hundred fetches a second and the broker answers each. Here:

- `Pacer` (one per process): a fetch that follows one which brought data goes out at once (more may be
  there). After an empty fetch, the next one waits until one of its topics is rung, or `heard_s` at most
  while the process's doorbell listener hears every topic it fetches: then every genloom record rings,
  and that bound only catches a producer that does not ring (or a PUBLISH that failed). While the
  listener is not yet hearing every topic (starting, a topic fetched for the first time, Redis
  reconnecting), an idle process waits `idle_s` at most, and a busy one (a consumer saw data in the last
  `busy_s`) `busy_poll_s`, since a ring may be missed then. With a listener hearing, idle consumers
  that fetched once a second (`idle_s`) were most of an idle stack's CPU, the broker's included: every
  fetch, however empty, is a request it answers; fetching once in 5 s took an idle `genloom up` from
  5.9% to 3.2% of one core, pickup p50 69.9 and 63.7 ms (AMD EPYC, AVX2; bench/idle_cpu.py). Polling every
  `busy_poll_s` whenever busy, rings heard or not, was most of what ran beside the engine while it
  prefilled a lone prompt on 2 cores: about 0.45 ms of the stack's CPU per ms of the engine's, against
  about 0.15 this way (bench/idle_cpu.py, part 4). `busy_poll_s = 0` fetches back to back while busy.
- The doorbell: a producer, once the broker acknowledged a record, PUBLISHes the topic's name on
  Redis channel of that topic (`ring`, coalesced per topic per loop turn; with `busy_poll_s = 0`, at
  most once per `busy_s / 2`, since a consumer it woke then stays busy longer than that); each process
  has one subscriber connection (`Doorbell`), subscribed to the channels of the topics its consumers
  fetch, that rings its `Pacer`. Once Redis confirms a subscription the listener rings those topics
  itself, so a record whose ring went out before the subscription took effect is fetched then. A
  channel per topic keeps a ring from waking the processes that do not read its topic: with one
  channel for all, a producer sending a thousand separate records a second cost every process of the
  stack a thousand wake-ups. A lost ring (a PUBLISH that failed, a producer that does not ring) costs
  at most `heard_s`; one missed while the listener was not hearing, at most `idle_s` (`busy_poll_s`
  while busy). A record no consumer needs at once is sent without a ring (`RingingProducer.send(ring=False)`:
  the gate's tokens on genloom.events) and is fetched with the next one that rings.

The pause sits in front of aiokafka's per-node fetch task (`install`), so every consumer of the
process, those of faust included, is paced the same way. The one other thing it may change is the fetch's
broker-side wait: with `rung_wait_ms` set (GENLOOM_KAFKA_RUNG_FETCH_WAIT_MS), a fetch sent while rings pace
the process asks for that wait instead of the consumer's `fetch_max_wait_ms` (`Pacer.fetch_wait_ms`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from infra.redis.push import PushConnection

log = logging.getLogger(__name__)

#: the doorbell channel of a topic is this prefix and the topic's name
CHANNEL = b"genloom:doorbell:"
#: how long the subscriber's read waits before it reads again (s): it subscribes the channels of topics
#: its process started to fetch meanwhile (their first fetch went out at once; until then a fetch of
#: them waits the busy or idle poll). A read of the caller's own timeout returns nothing and keeps the
#: connection; a blocking read would end at the client's socket timeout with an error, and the listener
#: would reconnect and resubscribe every few seconds
LISTEN_S = 1.0
#: how long the listener waits before it connects again after its connection failed (busy consumers poll
#: every `busy_poll_s` while it does not hear them)
RECONNECT_S = 0.5


def channel(topic: str) -> bytes:
    """The doorbell channel of `topic`."""
    return CHANNEL + topic.encode()


class Pacer:
    """When a consumer's next fetch may go out: after a ring, or after `heard_s` while `hearing` every
    topic, else after `idle_s`, or `busy_poll_s` while busy (at once while busy when that is 0); never
    later than that. `heard_s` None is `idle_s`."""

    def __init__(self, idle_s: float = 0.5, busy_s: float = 2.0, busy_poll_s: float = 0.0,
                 clock=time.monotonic, heard_s: float | None = None, rung_wait_ms: int = 0) -> None:
        self.idle_s = idle_s
        #: the broker-side wait of a fetch sent while rings pace this process (`rings_pace`); 0: the consumer's own
        self.rung_wait_ms = rung_wait_ms
        self.heard_s = idle_s if heard_s is None else heard_s
        self.busy_s = busy_s
        self.busy_poll_s = busy_poll_s
        self._clock = clock
        self._last_data = clock()  # starts busy: a process that just started may have work waiting
        self._rings: dict[str, int] = {}
        self._consumed: set[str] = set()
        self._waiters: dict[str, set[asyncio.Future]] = {}
        self._heard = -1  # how many of the consumed topics the doorbell listener hears; -1: none listens

    @property
    def hearing(self) -> bool:
        """Whether the doorbell listener hears the rings of every topic this process fetches (then a busy
        consumer can wait for a ring as an idle one does)."""
        return self._heard == len(self._consumed)

    def heard(self, topics: int | None) -> None:
        """The listener's subscriptions: how many consumed topics Redis confirmed (a subset of `consumed`,
        which only grows, so equal counts mean every one), or None when it is not connected."""
        self._heard = -1 if topics is None else topics

    def rings_pace(self) -> bool:
        """Whether a fetch that brings nothing waits here for a ring before the next one goes out (the
        listener hears every topic, and the process is idle or polls while busy): then the broker need
        not hold the fetch, and a record it holds it for waits out the hold (`fetch_wait_ms`)."""
        return self.hearing and (self.idle or self.busy_poll_s > 0)

    def fetch_wait_ms(self, configured: int) -> int:
        """How long a fetch going out now asks the broker to wait for data. The bundled broker does not
        end a wait when data arrives: a record produced while a fetch is held (the one that follows a
        fetch with data, or one woken by a ring for another consumer's partition) is answered at the
        hold's end. While rings pace this process, the hold is `rung_wait_ms`, and an empty answer waits
        for the record's ring instead."""
        if self.rung_wait_ms and self.rings_pace():
            return min(configured, self.rung_wait_ms)
        return configured

    @property
    def idle(self) -> bool:
        return self.idle_s > 0 and self._clock() - self._last_data >= self.busy_s

    def saw_data(self) -> None:
        self._last_data = self._clock()

    def ring(self, topic: str) -> None:
        """Work arrived on `topic`: wake the fetches waiting for it, keep the process busy a while."""
        self._rings[topic] = self._rings.get(topic, 0) + 1
        if topic in self._consumed:  # another process's topic must not keep this one's polls fast
            self.saw_data()
        for fut in self._waiters.pop(topic, ()):  # a faust consumer waits on a loop of its own thread
            fut.get_loop().call_soon_threadsafe(_wake, fut)

    def consumed(self) -> set[str]:
        """The topics this process's consumers fetch (a copy; the set grows from other threads)."""
        return set(self._consumed)

    def consumed_count(self) -> int:
        """How many topics `consumed` holds (it only grows: a listener compares counts, not sets)."""
        return len(self._consumed)

    def mark(self, topics: Iterable[str]) -> dict[str, int]:
        """The ring counts of `topics` when a fetch goes out; `wait` compares against them."""
        topics = list(topics)
        self._consumed.update(topics)
        return {t: self._rings.get(t, 0) for t in topics}

    async def wait(self, topics: list[str], since: dict[str, int] | None = None) -> None:
        """Return when one of `topics` rang after `since` (at once if one already has: per topic, since
        a consumer's fetches to one node may name different topics from one fetch to the next, as
        partitions are paused and resumed; a topic `since` has not seen yet goes out at once too),
        else on a ring or after `heard_s` while the listener hears every topic, else after `idle_s`, or
        `busy_poll_s` while busy (at once when that is 0)."""
        self._consumed.update(topics)  # its doorbell channels get subscribed (Doorbell._listen)
        if since is not None and any(since.get(t) != self._rings.get(t, 0) for t in topics):
            return
        if self.rings_pace():  # every ring is heard: wait for one
            timeout = self.heard_s  # (busy with busy_poll_s 0, rings are spaced and may not come: at once)
        else:
            timeout = self.idle_s if self.idle else self.busy_poll_s
        if timeout <= 0:
            return
        fut = asyncio.get_running_loop().create_future()
        for t in topics:
            self._waiters.setdefault(t, set()).add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            for t in topics:
                waiters = self._waiters.get(t)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[t]


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


_pacer: Pacer | None = None
_installed = False


def pacer() -> Pacer | None:
    """The process's pacer, or None when pacing is off (no Redis to ring through, or idle_poll_ms=0)."""
    return _pacer


def install(idle_s: float, busy_s: float, busy_poll_s: float = 0.0, heard_s: float | None = None,
            rung_wait_ms: int = 0) -> Pacer:
    """Pace every aiokafka consumer of this process (idempotent; later calls update the timings)."""
    global _pacer
    if _pacer is None:
        _pacer = Pacer(idle_s, busy_s, busy_poll_s, heard_s=heard_s, rung_wait_ms=rung_wait_ms)
    else:
        _pacer.idle_s, _pacer.busy_s, _pacer.busy_poll_s = idle_s, busy_s, busy_poll_s
        _pacer.heard_s = idle_s if heard_s is None else heard_s
        _pacer.rung_wait_ms = rung_wait_ms
    patch_fetcher()
    return _pacer


def patch_fetcher() -> None:
    """Put the pacer in front of aiokafka's per-node fetch, once per process. The first fetch on each
    event loop sets up the process's doorbell (`doorbell()`): consumers built outside a running loop,
    or in a thread of their own (faust's), are paced too."""
    global _installed
    if _installed:
        return
    from aiokafka.consumer.fetcher import Fetcher

    fetch = Fetcher._proc_fetch_request

    async def paced(self, assignment, node_id, request):
        if not self.__dict__.get("_genloom_bell"):
            self._genloom_bell = True
            doorbell()
        gap = self.__dict__.get("_genloom_gap_s")
        began = self.__dict__.setdefault("_genloom_began", {})  # node -> when its last fetch went out
        if gap:  # a spaced consumer: not before `gap` after its last fetch, data or not
            wait = began.get(node_id, -gap) + gap - time.monotonic()
            try:
                if wait > 0:
                    await asyncio.sleep(wait)
            except asyncio.CancelledError:
                return False  # unassigned or closing, as the fetch itself would report
        current = _pacer
        if current is None:
            began[node_id] = time.monotonic()
            return await fetch(self, assignment, node_id, request)
        topics = [topic for topic, _ in request.topics]
        marks = self.__dict__.setdefault("_genloom_marks", {})
        brought = self.__dict__.setdefault("_genloom_brought", {})  # node -> its last fetch brought data
        if not brought.get(node_id):  # after data, at once: more may be there
            try:
                await current.wait(topics, marks.get(node_id))
            except asyncio.CancelledError:
                return False
        marks.setdefault(node_id, {}).update(current.mark(topics))
        request._max_wait_ms = current.fetch_wait_ms(self._fetch_max_wait_ms)  # built before the wait: set now
        began[node_id] = time.monotonic()
        has_data = await fetch(self, assignment, node_id, request)
        brought[node_id] = bool(has_data)
        if has_data:
            current.saw_data()
        return has_data

    Fetcher._proc_fetch_request = paced
    _installed = True


def space_fetches(consumer, gap_s: float) -> None:
    """Let a started consumer fetch at most once per `gap_s` per broker, whatever rings and data say:
    for a consumer that needs no token-level latency (the cache filler), so that
    the broker and its process answer far fewer fetches while tokens stream. Each fetch then brings
    what queued up meanwhile. 0 undoes it."""
    consumer._fetcher._genloom_gap_s = gap_s


def uninstall() -> None:
    """Stop pacing (tests); the wrapper stays and passes fetches straight through."""
    global _pacer
    _pacer = None


class Doorbell:
    """One Redis connection per process that publishes rings and one that listens for them."""

    def __init__(self, url: str, pacer: Pacer | None = None, *, socket_timeout_s: float | None = None,
                 listen_s: float = LISTEN_S, min_interval_s: float = 0.0, clock=time.monotonic) -> None:
        from infra.redis.client import SOCKET_TIMEOUT_S, connect

        self._url = url
        self._client = connect(url, max_connections=4, socket_timeout_s=socket_timeout_s or SOCKET_TIMEOUT_S)
        self._listen_s = listen_s
        self._pacer = pacer
        self._pending: set[str] = set()
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._rung: dict[str, float] = {}  # topic -> when this process last rang it
        self._flush: asyncio.Task | None = None
        self._listener: asyncio.Task | None = None
        #: the connection rings are published on (made on the first ring, dropped when it fails)
        self._out: PushConnection | None = None
        self._reply_s = socket_timeout_s or SOCKET_TIMEOUT_S

    def ring(self, topic: str) -> None:
        """Publish `topic` soon (coalesced: one PUBLISH per topic per loop turn), and not again within
        `min_interval_s`; never raises.

        A ring only matters to a consumer that has backed off. One it woke fetched the record, so its
        process stays busy (fetching without pause) for `busy_s` after it: rings of the same topic
        within half that add nothing but a PUBLISH, and a wake-up in every process of the stack. Under
        load (a token event a few milliseconds apart) ringing each one cost more CPU than the engine
        could spare (66 against 101 output tok/s at 16 streams on 2 cores)."""
        if topic in self._pending:
            return
        now = self._clock()
        if self._min_interval_s and now - self._rung.get(topic, -1e18) < self._min_interval_s:
            return
        self._rung[topic] = now
        self._pending.add(topic)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._publish())

    async def _publish(self) -> None:
        """Publish what is pending until nothing is: a topic rung while a PUBLISH is in flight is
        pending again, and `ring` leaves it to this task (which is not done yet), so it must go out
        in a next round here, or it (and every later ring of it) would wait for some other topic's ring.

        The PUBLISHes go out on a connection held for them, packed and written at once, their replies
        read back raw (`PushConnection`), without a pooled client's pipeline around each round (with the
        listener read the same way, a ring is heard 0.16 ms sooner after the acknowledgement;
        bench/kafka_hop.py). A failed round drops the connection; the next ring makes another."""
        while self._pending:
            await asyncio.sleep(0)
            topics, self._pending = self._pending, set()
            try:
                out = self._out
                if out is None:
                    out = PushConnection(self._client)
                    await out.connect()
                    self._out = out
                await out.command(*(("PUBLISH", channel(topic), b"") for topic in topics))
                owed = len(topics)
                while owed > 0:
                    replies = await out.read(self._reply_s)
                    if not replies:
                        raise ConnectionError("Redis did not answer the doorbell's PUBLISH")
                    owed -= len(replies)
            except Exception as exc:  # a missed ring costs at most the idle poll
                log.debug("doorbell publish failed: %s", exc)
                self._out = None
                try:
                    await out.aclose()
                except Exception:  # already broken: nothing more to give back
                    pass

    def listen(self) -> None:
        if self._pacer is not None and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        """Subscribe the channels of the topics this process fetches, and ring the pacer on each message.
        Read in bulk (`PushConnection`): each ring is a wake-up of the process, and redis-py's
        `get_message` put a health check, a retry wrapper and a parser await in front of every one. A wait
        that brings nothing sends a PING; a connection that answers nothing by the next wait is dead."""
        pacer = self._pacer
        while True:
            conn = PushConnection(self._client)
            subscribed: set[str] = set()
            confirmed = 0
            try:
                await conn.connect()
                while True:
                    new = pacer.consumed() - subscribed if pacer.consumed_count() > len(subscribed) else None
                    if new:
                        await conn.subscribe(*(channel(t) for t in new))
                        subscribed |= new
                    if not subscribed:  # nothing fetched here yet
                        await asyncio.sleep(self._listen_s)
                        continue
                    messages = await conn.read(self._listen_s)
                    if not messages:
                        await conn.ping()
                        continue
                    for kind, name, *_ in messages:
                        if kind == b"message":
                            pacer.ring(name[len(CHANNEL):].decode())
                        elif kind == b"subscribe":
                            # heard from now on; a ring sent before is rung here, and the fetch it wakes
                            # (after the record was acknowledged, which was before that ring) finds the record
                            confirmed += 1
                            pacer.heard(confirmed)
                            pacer.ring(name[len(CHANNEL):].decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarted: busy and idle polls bound the delay meanwhile
                log.debug("doorbell listener: %s", exc)
                pacer.heard(None)
                await asyncio.sleep(RECONNECT_S)
            finally:
                pacer.heard(None)
                try:
                    await conn.aclose()
                except Exception:
                    pass

    async def close(self) -> None:
        for task in (self._listener, self._flush):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        if self._out is not None:
            await self._out.aclose()
            self._out = None
        await self._client.aclose()


_bells: dict[int, Doorbell] = {}
_listening = False
_no_redis: list[bool] = []


def doorbell() -> Doorbell | None:
    """This process's doorbell on the running loop (made on first use from `GENLOOM_REDIS_URL` and the
    `GENLOOM_KAFKA_*` pacing settings), or None when no Redis URL is set: then nothing is paced."""
    from infra.settings import KafkaSettings, RedisSettings

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    bell = _bells.get(id(loop))
    if bell is not None or _no_redis:
        return bell
    url = RedisSettings().url
    if not url:
        _no_redis.append(True)  # settings are read once per process
        return None
    kafka = KafkaSettings()
    busy_poll_s = kafka.busy_poll_ms / 1000
    current = (install(kafka.idle_poll_ms / 1000, kafka.busy_s, busy_poll_s, kafka.heard_poll_ms / 1000,
                       kafka.rung_fetch_wait_ms) if kafka.idle_poll_ms > 0 else None)
    global _listening
    # a busy consumer waits for rings only when busy_poll_ms > 0: then every record must ring
    bell = _bells[id(loop)] = Doorbell(url, None if _listening else current,
                                       min_interval_s=0.0 if busy_poll_s > 0 else kafka.busy_s / 2)
    if current is not None and not _listening:  # one subscriber connection per process
        _listening = True
        bell.listen()
    return bell


def register(bell: Doorbell | None) -> Doorbell | None:
    """Use `bell` as the running loop's doorbell (tests and embedders that build their own); None forgets it.
    Returns the one it replaces, for the caller to put back."""
    loop_id = id(asyncio.get_running_loop())
    if bell is None:
        return _bells.pop(loop_id, None)
    previous = _bells.get(loop_id)
    _bells[loop_id] = bell
    return previous


def ring_after(future: asyncio.Future, topic: str) -> None:
    """Ring `topic` once the delivery `future` succeeds (the record is readable then)."""
    bell = doorbell()
    if bell is None:
        return
    future.add_done_callback(lambda f: bell.ring(topic) if not f.cancelled() and f.exception() is None else None)
