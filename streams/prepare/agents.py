"""The preparation agent: thin. It polls a batch, decodes it (logic.decode), runs the chained stages
over it (chain.run_chain) and sends what logic.plan says, in order. It replaces the routing agent on
`genloom.requests`: routing is the chain's last step, and the topic keeps one consumer group. A cache
hit's answer also goes straight to the job's replay log (logic.replay_writes), a hop before the fan-out."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import faust
from redis.exceptions import RedisError

from opentelemetry.trace import SpanKind

from infra.kafka.topics import REQUESTS
from infra.redis.jobstore import JobStore
from infra.settings.streams import PrepareSettings
from infra.tracing import record_span, start_span, with_traceparent

from ..app import RAW, Topics
from ..batches import natural_batches
from .chain import StageContext, after_sent, build_stages, run_chain
from .logic import Decoded, Out, Polled, awaiting_open, decode, plan, rejected, replay_writes

log = logging.getLogger(__name__)


def register(app: faust.App, topics: Topics, settings: PrepareSettings, ctx: StageContext, *, max_bytes: int,
             signing_key: bytes | None, moderated: bool) -> None:
    names = settings.stage_names()
    source = topics.requests if settings.input == REQUESTS else app.topic(settings.input, internal=False, **RAW)
    handles: dict[str, faust.TopicT] = {}

    def topic(name: str) -> faust.TopicT:
        if name not in handles:
            handles[name] = app.topic(name, internal=False, **RAW)
        return handles[name]

    @app.agent(source, name="genloom.prepare")
    async def prepare(stream):
        stages = await asyncio.to_thread(build_stages, names, ctx)  # loads models: off the loop
        log.info("preparation chain: %s -> %s", " -> ".join(names) or "(no stages)", settings.output)
        try:
            # hot loop: one pass over the batch per stage, then its messages sent in order
            async for events in natural_batches(stream, settings.batch_max):
                polled_ts = time.time()
                polled = [Polled(m.topic, m.partition, m.offset, m.key, m.value, list(m.headers or ()))
                          for m in (e.message for e in events)]
                decoded = [decode(p, max_bytes=max_bytes, consumer=app.conf.id, signing_key=signing_key)
                           for p in polled]
                items = [d.item for d in decoded if isinstance(d, Decoded)]
                spans = [prepare_span(p, polled_ts) for p in polled]
                chain_began = time.time()
                spent = await run_chain(stages, items, skip=lambda i: settings.all_off(i.request.tenant))
                trace_stages(spans, chain_began, spent)
                planned = []
                for p, d in zip(polled, decoded):
                    if isinstance(d, Decoded):
                        ran = [] if settings.all_off(d.item.request.tenant) else names
                        planned.append(plan(d, stages=ran, stage_ms={n: spent[n] for n in ran if n in spent},
                                            output=settings.output, signing_key=signing_key, moderated=moderated,
                                            polled_ts=polled_ts))
                    else:
                        planned.append(rejected(d, p.key, withhold="privacy" in names))
                if ctx.events is not None and any(o.event is not None for outs in planned for o in outs):
                    await replay_now(ctx.events, planned)
                deliveries = []
                for outs, span in zip(planned, spans):
                    deliveries += await send([replace(o, headers=with_traceparent(o.headers, span) or None)
                                              for o in outs] if span.is_recording() else outs)
                    span.end()
                await delivered(deliveries)  # the jobs are the broker's before the stages' after-work
                await after_sent(stages, items, skip=lambda i: settings.all_off(i.request.tenant))
        finally:
            await ctx.aclose()

    async def replay_now(store: JobStore, planned: list[list[Out]]) -> None:
        """Cache hits' answers into their replay logs before Kafka: the client reads them a Kafka hop
        (the fan-out's) sooner. Best effort: on a Redis error the fan-out writes them as for any job."""
        try:
            items = replay_writes(planned, await store.opened(awaiting_open(planned)))
            if items:
                await store.apply_batch(items, time.time())
        except (RedisError, OSError) as exc:
            log.warning("could not write cache hits to their replay logs (%s); the fan-out will",
                        type(exc).__name__)

    async def send(outs: list[Out]) -> list[asyncio.Future]:
        return [await topic(o.topic).send(key=o.key, value=o.value, headers=o.headers or None) for o in outs]


async def delivered(deliveries: list[asyncio.Future], timeout_s: float = 1.0) -> None:
    """Wait until the broker acknowledged the batch's messages (at most `timeout_s`: a send that fails or
    hangs is the producer's to report), then give the doorbell's rings, which the acknowledgements start, a
    turn of the loop to go out.

    The stages' `after_sent` work waits for this. Begun as soon as the sends were queued, that work (a
    vector that only labels the answer the cache will store: milliseconds of CPU) ran while the job's
    produce, acknowledgement and ring were due, and on 2 cores it delayed the job's own hop by 2 to 3 ms:
    submit to the worker's `started` p50 was 5.7 ms above the direct route with this wait against 8.5 ms
    without (4 alternating runs of bench/prepare_stages.py --only-ttft on a Zen 4 EPYC)."""
    if deliveries:
        await asyncio.wait(deliveries, timeout=timeout_s)
        await asyncio.sleep(0)


def prepare_span(polled: Polled, polled_at: float):
    """The span of one request's preparation, under the trace its message carries (no-op when off)."""
    return start_span("prepare", polled.headers, start_s=polled_at, kind=SpanKind.CONSUMER,
                      attributes={"messaging.kafka.offset": polled.offset})


def trace_stages(spans, began: float, spent: dict[str, float]) -> None:
    """Each stage as a child span of every traced request of the batch (the stages run one after another
    over the whole batch, so each request's stage span is the batch's)."""
    traced = [s for s in spans if s.is_recording()]
    if not traced:
        return
    at = began
    for name, ms in spent.items():
        for span in traced:
            record_span(f"stage {name}", span, at, at + ms / 1000)
        at += ms / 1000
