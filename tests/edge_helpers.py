"""Helpers for the edge tests: a cuttable TCP proxy, topic scans (the in-process server is gateway.inprocess)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from infra.kafka import clients


class CuttableProxy:
    """A TCP proxy on loopback whose open connections can be cut, to force client reconnects."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        """Abort every open connection, both sides."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


async def read_until_idle(bootstrap: str, topic: str, idle_s: float = 1.5, timeout: float = 30.0) -> list:
    """Everything on `topic` from the beginning, read until nothing new came for `idle_s`.

    The bundled broker's end offsets are wrong (ListOffsets), so idleness is the honest end.
    """
    consumer = clients.consumer(bootstrap, topic, group_id=None, auto_offset_reset="earliest")
    await clients.start_client(consumer, bootstrap)
    seen: list = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - last_new < idle_s:
            batches = await consumer.getmany(timeout_ms=100)
            for messages in batches.values():
                seen.extend(messages)
                last_new = time.monotonic()
        return seen
    finally:
        await consumer.stop()


def values(messages) -> list[dict]:
    out = []
    for m in messages:
        with contextlib.suppress(ValueError):
            data = json.loads(m.value)
            if isinstance(data, dict):
                out.append(data)
    return out


def text_job(prompt: str = "hello", **extra) -> dict:
    return {"modality": "text", "params": {"messages": [{"role": "user", "content": prompt}]}, **extra}


async def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1):
    """Poll an async predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
