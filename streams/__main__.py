"""`python -m streams`: run the stream processors (one faust worker)."""

from __future__ import annotations

import sys

from infra.settings import KafkaSettings, RedisSettings, SigningSettings
from infra.settings.streams import CacheSettings, StreamsSettings

from .app import create_app
from .cache import agents as cache
from .fanout import agents as fanout
from .reconciler import agents as reconciler
from .routing import agents as routing


def main() -> None:
    kafka = KafkaSettings()
    if not kafka.bootstrap:
        sys.exit("GENLOOM_KAFKA_BOOTSTRAP is not set: run `genloom up`, or point it at a Kafka broker")
    settings = StreamsSettings()
    app, topics = create_app(kafka.bootstrap, settings, kafka)
    routing.register(app, topics, settings.max_message_bytes, SigningSettings().key)
    redis_url = RedisSettings().url
    fanout.register(app, topics, redis_url)
    reconciler.register(app, topics, redis_url)
    cache_settings = CacheSettings()
    if cache_settings.enabled:
        # the preparation processor's cache stage must be built over this same object
        # (cache.build_stage), so answers stored here reach its in-process tier too
        semantic_cache = cache.build_cache(cache_settings, redis_url)
        cache.register_fill(app, topics, semantic_cache)
    argv = ["worker", "-l", "info"]
    if settings.web_port == 0:
        argv.append("--without-web")
    sys.argv = [sys.argv[0], *argv]
    app.main()


if __name__ == "__main__":
    main()
