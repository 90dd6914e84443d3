"""An ASGI app under uvicorn inside the running event loop: the gateway beside its caller, as the
edge benchmark and the integration tests run it (`python -m gateway` is the process users run)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import uvicorn

from infra.procs import free_port


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the test runner owns SIGINT and SIGTERM."""

    def capture_signals(self):
        return contextlib.nullcontext()


class InProcessServer:
    """An ASGI app under uvicorn on a free loopback port, in the running event loop."""

    def __init__(self, app, port: int = 0) -> None:
        self.port = port or free_port()
        settings = getattr(getattr(app, "state", None), "settings", None)
        ws_max = getattr(settings, "ws_max_frame_bytes", 16 * 1024 * 1024)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning",
                                ws="websockets-sansio", ws_max_size=ws_max, timeout_graceful_shutdown=1)
        self._server = _QuietServer(config)
        self._task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> InProcessServer:
        self._task = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + 10
        while not self._server.started:
            if self._task.done() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.port}")
            await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._task, 5)
