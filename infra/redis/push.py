"""One Redis Pub/Sub connection, read in bulk: every message a socket read brought, parsed at once.

redis-py's `PubSub.get_message` hands over one message per call, and each call goes through a
health check, a retry wrapper, a timeout context and a parser await. The gateway's replay reader
receives one message per token event per stream: at 100 streams that path cost it more CPU than
the rest of the event's way to the client (`bench/edge_fanout.py`). Here a read waits once for the
socket and returns every complete message in what arrived, parsed by hiredis in C.

The connection is one of the client's pool (so the pool's bound counts it, and it is made as the
pool makes every connection: TCP, TLS or a Unix socket, credentials, timeouts, client name), taken
for as long as the reader runs, read and written directly, and closed before it goes back.

Liveness: `read` returns [] after an idle wait; the caller sends `ping` then, and a connection that
answers nothing within the next wait is dead (`ConnectionError`): a half-open socket is noticed
within two waits, as redis-py's health check would.
"""

from __future__ import annotations

import asyncio

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

#: bytes asked of the socket per read (a burst of pushes arrives in one or a few reads)
READ_SIZE = 1 << 16


class PushConnection:
    """SUBSCRIBE / UNSUBSCRIBE / PING out; messages in, as lists: [b'message', channel, data],
    [b'subscribe', channel, count], [b'unsubscribe', channel, count], [b'pong', b''] (a pong while
    nothing is subscribed is the plain reply b'PONG'). On a connection that subscribes nothing, any
    commands (`command`) and their plain replies (the doorbell's PUBLISHes)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._pool = redis.connection_pool
        self._conn = None
        self._stream: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._replies = hiredis.Reader()
        self._pinged = False

    async def connect(self) -> None:
        conn = await self._pool.get_connection()  # connected; held until aclose
        stream, writer = getattr(conn, "_reader", None), getattr(conn, "_writer", None)
        if not isinstance(stream, asyncio.StreamReader) or writer is None:  # a redis-py that keeps them elsewhere
            await self._release(conn)
            raise RedisConnectionError("this redis-py does not expose its connection's streams: install redis>=6,<7")
        self._conn, self._stream, self._writer = conn, stream, writer

    async def command(self, *commands: tuple) -> None:
        """Send commands (each a tuple of arguments) in one write; their replies come back through `read`."""
        if self._writer is None:
            raise RedisConnectionError("the connection is closed")
        self._writer.write(b"".join(hiredis.pack_command(c) for c in commands))
        await self._writer.drain()

    async def subscribe(self, *channels: bytes) -> None:
        await self.command(("SUBSCRIBE", *channels))

    async def unsubscribe(self, *channels: bytes) -> None:
        await self.command(("UNSUBSCRIBE", *channels))

    async def ping(self) -> None:
        """Ask for a pong; the next `read` that stays empty after it means the connection is dead."""
        if self._pinged:
            raise RedisConnectionError("Redis did not answer a PING on the Pub/Sub connection")
        self._pinged = True
        await self.command(("PING",))

    async def read(self, timeout_s: float) -> list[list]:
        """The messages that came within `timeout_s`: all of one socket read; [] when none came."""
        messages = self._parsed()
        if messages:
            return messages
        if self._stream is None:
            raise RedisConnectionError("the Pub/Sub connection is closed")
        try:
            async with asyncio.timeout(timeout_s):
                data = await self._stream.read(READ_SIZE)
        except TimeoutError:
            return []
        if not data:
            raise RedisConnectionError("Redis closed the Pub/Sub connection")
        self._replies.feed(data)
        self._pinged = False  # anything at all from Redis shows the connection alive
        return self._parsed()

    def _parsed(self) -> list[list]:
        out = []
        while True:
            try:
                reply = self._replies.gets()
            except hiredis.ProtocolError as exc:
                raise RedisConnectionError(f"the Pub/Sub connection read garbage: {exc}") from None
            if reply is False:
                return out
            if isinstance(reply, hiredis.ReplyError):
                raise ResponseError(str(reply))
            out.append(reply)

    async def aclose(self) -> None:
        conn, self._conn, self._stream, self._writer = self._conn, None, None, None
        self._replies = hiredis.Reader()
        if conn is not None:
            await self._release(conn)

    async def _release(self, conn) -> None:
        """Back to the pool closed: a subscribed connection must not serve commands."""
        try:
            await conn.disconnect()
        finally:
            await self._pool.release(conn)
