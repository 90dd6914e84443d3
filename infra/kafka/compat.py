"""Two defects of aiokafka 0.14 that wedge a client for good after a broker restart, fixed in place.

1. Under uvloop, writing to a connection the broker has just closed raises RuntimeError ("unable to
   perform operation on <TCPTransport closed=True ...>; the handler is closed"), where the standard loop
   raises nothing or an OSError; `AIOKafkaConnection.send` catches only OSError (aio-libs/aiokafka#1038).
2. The client's metadata routine (`AIOKafkaClient._md_synchronizer`, one task per client) catches only
   Kafka errors and timeouts around a metadata request, so that RuntimeError ends the task. Every later
   `force_metadata_update()` then waits forever for an update nobody makes, and a consumer group's
   coordinator lookup awaits one after each failed try: the consumer never rejoins its group, and its
   process neither consumes nor stops (its `stop()` waits for the same lookup).

Both were seen together when `genloom up` restarted the bundled broker: the moderation gate's consumer
stayed out of its group, and every job after the restart stopped after its `started` event.

`harden()` (once per process, from every client factory in `clients`) makes `send` on a connection
whose transport is closing raise `KafkaConnectionError` and close the connection, as for an OSError, so
the callers' retries apply; and it restarts the metadata routine after any other error, logged, instead
of letting it end. Other RuntimeErrors from `send` pass through unchanged.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

#: how long the metadata routine waits before it runs again after an unexpected error (s)
SYNC_RETRY_S = 0.5

_hardened = False


def harden() -> None:
    """Patch aiokafka's connection send and metadata routine, once per process."""
    global _hardened
    if _hardened:
        return
    from aiokafka.client import AIOKafkaClient
    from aiokafka.conn import AIOKafkaConnection, CloseReason
    from aiokafka.errors import KafkaConnectionError

    send = AIOKafkaConnection.send

    def closed_send_is_a_broken_connection(self, request, expect_response=True):
        try:
            return send(self, request, expect_response)
        except RuntimeError as exc:
            writer = self._writer
            if writer is None or not writer.transport.is_closing():
                raise
            self.close(reason=CloseReason.CONNECTION_BROKEN)
            raise KafkaConnectionError(f"Connection at {self.host}:{self.port} broken: {exc}") from exc

    sync = AIOKafkaClient._md_synchronizer

    async def synchronizer_that_survives(self):
        while True:
            try:
                return await sync(self)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Kafka metadata routine failed (%s: %s); running it again in %.1fs",
                            type(exc).__name__, exc, SYNC_RETRY_S)
                await asyncio.sleep(SYNC_RETRY_S)
                if self._md_update_fut is not None and not self._md_update_waiter.done():
                    self._md_update_waiter.set_result(None)  # an update is owed: the next pass goes at once

    AIOKafkaConnection.send = closed_send_is_a_broken_connection
    AIOKafkaClient._md_synchronizer = synchronizer_that_survives
    _hardened = True
