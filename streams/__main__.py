"""`python -m streams`: run the stream processors (one faust worker).

By default one process runs the preparation chain on `genloom.requests` (GENLOOM_PREPARE_STAGES,
then routing to the workers) and the fan-out. A stage split out into its own processor is this
same command with its own GENLOOM_PREPARE_* (stages, input, output), app id, and the fan-out off.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from infra.blob.config import BlobSettings, blob_store
from infra.metrics import serve_metrics
from infra.tracing import setup_tracing
from infra.settings import KafkaSettings, MetricsSettings, RedisSettings, SigningSettings, StorageSettings
from infra.settings.memory import MemorySettings
from infra.settings.moderation import ModerationSettings, moderation_enabled
from infra.settings.streams import (CacheSettings, EmbeddingSettings, FanoutSettings, PrepareSettings, PrivacySettings,
                                    StreamsSettings, WebhookSettings)

from .app import create_app
from .cache import agents as cache
from .fanout import agents as fanout
from .memory import agents as memory
from .memory.backends import MemoryBackends
from .prepare import agents as prepare
from .prepare.chain import STAGE_BUILDERS, StageContext
from .reconciler import agents as reconciler
from . import tap


def main() -> None:
    metrics = MetricsSettings()
    serve_metrics(metrics.port, metrics.host)
    setup_tracing("genloom-streams")
    kafka = KafkaSettings()
    if not kafka.bootstrap:
        sys.exit("GENLOOM_KAFKA_BOOTSTRAP is not set: run `genloom up`, or point it at a Kafka broker")
    settings = StreamsSettings()
    preparing = PrepareSettings()
    unknown = [n for n in preparing.stage_names() if n not in STAGE_BUILDERS]
    if unknown:
        sys.exit(f"GENLOOM_PREPARE_STAGES names unknown stages {unknown}: choose from {sorted(STAGE_BUILDERS)}")
    redis_url = RedisSettings().url
    app, topics = create_app(kafka.bootstrap, settings, kafka)
    cache_settings = CacheSettings()
    # one cache object per process: the preparation's cache stage reads it, the fill agent writes it,
    # so answers stored here reach its in-process tier too
    semantic_cache = cache.build_cache(cache_settings, redis_url) if cache_settings.enabled else None
    remembering = MemorySettings()
    # one set of memory backends per process: the enrichment stage reads them, the memory writer writes them
    backends = MemoryBackends(remembering, StorageSettings().home, redis_url) if remembering.enabled else None
    ctx = StageContext(redis_url=redis_url, privacy=PrivacySettings(), embedding=EmbeddingSettings(),
                       cache_settings=cache_settings, semantic_cache=semantic_cache, memory=backends,
                       fanout=FanoutSettings(), webhooks=WebhookSettings(), moderation=ModerationSettings())
    prepare.register(app, topics, preparing, ctx,
                     max_bytes=settings.max_message_bytes, signing_key=SigningSettings().key,
                     moderated=moderation_enabled(ModerationSettings()))
    taps = []  # the consumers of genloom.events, each a group of its own beside faust (streams/tap.py)
    if settings.fanout:
        taps.append(fanout.spec(kafka.bootstrap, redis_url))
        reconciler.register(app, topics, redis_url)
    if semantic_cache is not None:  # no token-level latency needed: it fetches what queued up, now and then
        taps.append(replace(cache.fill_spec(semantic_cache), fetch_gap_s=settings.background_fetch_gap_ms / 1000))
    if backends is not None and settings.fanout and redis_url:  # the writer runs beside the fan-out
        # spaced too: a job's request and its `completed` may then come in either order, which the writer
        # reconciles in Redis (streams/memory/agents.py)
        writer = memory.register(app, memory.build_writer(backends, ctx, blob_store(BlobSettings())))
        taps.append(replace(writer, fetch_gap_s=settings.background_fetch_gap_ms / 1000))
    tap.register(app, [t for t in taps if t is not None], bootstrap=kafka.bootstrap, settings=settings)
    argv = ["worker", "-l", "info"]
    if settings.web_port == 0:
        argv.append("--without-web")
    sys.argv = [sys.argv[0], *argv]
    app.main()


if __name__ == "__main__":
    main()
