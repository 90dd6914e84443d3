"""faust's consumers get genloom's fetch settings: its aiokafka driver hard-codes a 1.5 s fetch wait, and
aiokafka's fetch routine would wake an idle stream processor five times a second per consumer."""

from infra.kafka.clients import CONSUMER_TIMEOUT_MS
from infra.settings.streams import StreamsSettings
from streams.app import create_app


async def test_the_faust_consumer_waits_and_wakes_as_genloom_consumers_do():
    app, _ = create_app("127.0.0.1:9", StreamsSettings(fetch_max_wait_ms=7))  # never connected: built only
    consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == 7
        assert consumer._consumer_timeout == CONSUMER_TIMEOUT_MS / 1000
    finally:
        await consumer.stop()
