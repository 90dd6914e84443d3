"""`python -m workers MODALITY`: run one worker (text, speech, image, video) or the moderation gate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from aiokafka.errors import KafkaConnectionError

from infra.blob.config import BlobSettings, blob_store
from infra.fanout.writer import ReplayWriter
from infra.kafka.clients import BrokerUnavailable
from infra.kafka.topics import EVENTS, EVENTS_RAW
from infra.metrics import serve_metrics
from infra.tracing import setup_tracing
from infra.settings import KafkaSettings, MetricsSettings, RedisSettings, SigningSettings
from infra.settings.moderation import ModerationSettings, moderation_enabled
from infra.settings.worker import WorkerSettings
from schemas.enums import Modality

from .moderation.build import build_gate
from .registry import HandlerUnavailable, handler_factory
from .wiring import gate_runner, job_runner


async def _serve(build: Callable[[], Any], bootstrap: str) -> None:
    """Build the service (its Kafka clients need the running loop), start it, run until a signal."""
    service = build()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.start()
    except (KafkaConnectionError, OSError) as exc:
        raise BrokerUnavailable(bootstrap, exc) from None
    task = asyncio.create_task(service.run())
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    await service.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if task in done and task.exception():
        raise task.exception()


def _replay_writer(moderation: ModerationSettings):
    """The gate's own write into the replay logs (`GENLOOM_MODERATION_REPLAY_DIRECT`), where Redis is set: the
    fan-out's own handler, so both apply events alike. Its client connects on first use, inside the running loop."""
    url = RedisSettings().url
    if not moderation.replay_direct or not url:
        return None
    return ReplayWriter(url, consumer=moderation.group)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers")
    parser.add_argument("role", choices=[m.value for m in Modality] + ["moderation"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    metrics = MetricsSettings()
    serve_metrics(metrics.port, metrics.host)
    setup_tracing(f"genloom-{args.role}" if args.role == "moderation" else f"genloom-worker-{args.role}")
    kafka = KafkaSettings()
    if not kafka.bootstrap:
        sys.exit("GENLOOM_KAFKA_BOOTSTRAP is not set: run `genloom up`, or point it at a Kafka broker")
    common = dict(bootstrap=kafka.bootstrap, fetch_max_wait_ms=kafka.fetch_max_wait_ms,
                  session_timeout_ms=kafka.session_timeout_ms,
                  heartbeat_interval_ms=kafka.heartbeat_interval_ms)
    if args.role == "moderation":
        moderation = ModerationSettings()
        build = partial(gate_runner, build_gate(moderation), group=moderation.group,
                        blobs=blob_store(BlobSettings()), commit_gap_s=moderation.commit_gap_ms / 1000,
                        replay=_replay_writer(moderation), **common)
    else:
        settings = WorkerSettings()
        if settings.torch_threads:
            import torch  # heavy: only a worker that sets its thread count needs it here

            torch.set_num_threads(settings.torch_threads)
        try:
            handler = handler_factory(Modality(args.role))()
        except HandlerUnavailable as exc:
            sys.exit(str(exc))
        events_topic = EVENTS_RAW if moderation_enabled(ModerationSettings()) else EVENTS
        build = partial(job_runner, handler, worker_id=settings.id, max_concurrency=settings.max_concurrency,
                        max_message_bytes=kafka.max_message_bytes,
                        cancel_lookback_s=settings.cancel_lookback_s, events_topic=events_topic,
                        read_ahead=settings.read_ahead, tenant_weights=settings.tenant_weights,
                        signing_key=SigningSettings().key, started_hold_s=settings.started_hold_ms / 1000, **common)
    try:
        import uvloop  # optional: the faster event loop when installed

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(build, kafka.bootstrap))


if __name__ == "__main__":
    main()
