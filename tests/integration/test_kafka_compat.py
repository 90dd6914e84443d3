"""aiokafka under uvloop, against the bundled broker: a connection the broker closed and a metadata
routine that hit an unexpected error must not wedge a client (infra/kafka/compat.py)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from infra.kafka.compat import harden

pytestmark = pytest.mark.integration


def run_on_uvloop(coro):
    """The workers' and the gateway's loop: the defect is uvloop's way of refusing a write."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def _bootstrapped(bootstrap: str) -> AIOKafkaClient:
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    return client


async def _open_connection(client: AIOKafkaClient):
    """A broker's node id and the client's live connection to it."""
    node = client.get_random_node()
    assert await client.ready(node)
    return node, next(c for (n, _), c in client._conns.items() if n == node)


def test_a_send_on_a_connection_the_broker_closed_is_a_connection_error(kafka_bootstrap):
    harden()

    async def scenario():
        client = await _bootstrapped(kafka_bootstrap)
        try:
            node, conn = await _open_connection(client)
            # the broker went away: uvloop closes the handle at once, aiokafka's reader notices a turn later;
            # a send in that turn met uvloop's RuntimeError, which aiokafka let through
            conn._writer.transport.close()
            await asyncio.sleep(0)
            with pytest.raises(KafkaConnectionError, match="broken"):
                await conn.send(MetadataRequest([]))
            assert not conn.connected()  # dropped: the next request opens a new connection
            response = await client.send(node, MetadataRequest([]))
            assert response.brokers
        finally:
            await client.close()

    run_on_uvloop(scenario())


def test_the_metadata_routine_outlives_an_unexpected_error(kafka_bootstrap):
    harden()

    async def scenario():
        client = await _bootstrapped(kafka_bootstrap)
        update, failures = client._metadata_update, []

        async def fails_once(cluster, topics):
            if not failures:
                failures.append(1)
                raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")
            return await update(cluster, topics)

        client._metadata_update = fails_once
        try:
            # unpatched, the routine's task ends with the error and this waits for ever
            assert await asyncio.wait_for(client.force_metadata_update(), 10) is True
            assert failures == [1]
            assert not client._sync_task.done()
            assert await asyncio.wait_for(client.force_metadata_update(), 10) is True  # and again
        finally:
            await client.close()

    run_on_uvloop(scenario())


def test_other_runtime_errors_of_send_pass_through(kafka_bootstrap):
    harden()

    async def scenario():
        client = await _bootstrapped(kafka_bootstrap)
        try:
            _, conn = await _open_connection(client)

            class Unbuildable:
                def prepare(self, versions):
                    raise RuntimeError("not a transport problem")

            with pytest.raises(RuntimeError, match="not a transport problem"):
                conn.send(Unbuildable())
            assert conn.connected()
        finally:
            await client.close()

    run_on_uvloop(scenario())
