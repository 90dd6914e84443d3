"""A faust transport whose consumers poll with a short fetch wait.

faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500``. Kafka brokers answer a fetch as
soon as data arrives, so that only matters when idle; the bundled broker never wakes a waiting
fetch early, so every event would sit up to 1.5 s before a stream processor saw it. The consumer
is created with faust's settings and then given genloom's wait (and genloom's fetch routine timeout,
`clients.CONSUMER_TIMEOUT_MS`) before it starts; idle, its fetches
back off and wake on the doorbell like every consumer's, and its producer rings it (`infra.kafka.doorbell`).
"""

from __future__ import annotations

from faust.transport.drivers import aiokafka as faust_aiokafka

from infra.kafka.clients import CONSUMER_TIMEOUT_MS, RingingProducer
from infra.kafka.doorbell import patch_fetcher

class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # read by AIOKafkaConsumer.start() when it builds its fetcher
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        consumer._consumer_timeout = CONSUMER_TIMEOUT_MS / 1000  # as genloom's own consumers (clients.consumer)
        patch_fetcher()  # idle, the fetches back off and wait for a ring (infra.kafka.doorbell)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self):
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Producer(faust_aiokafka.Producer):
    @property
    def _producer_type(self):
        return RingingProducer


class LowLatencyTransport(faust_aiokafka.Transport):
    Consumer = _Consumer
    Producer = _Producer
