"""The process's memory backends: the store, the vector index and the session store, made once and
shared by the enrichment stage and the memory writer (an embedded index must have one owner per
process: two handles on its files would overwrite each other's writes). `start()` connects them
on first use and is idempotent; whoever runs first pays for it."""

from __future__ import annotations

import asyncio
from functools import cached_property
from pathlib import Path

from infra.memory import open_store
from infra.redis.client import connect
from infra.redis.sessions import SessionStore
from infra.settings.memory import MemorySettings
from infra.vectors import open_index


class MemoryBackends:
    def __init__(self, settings: MemorySettings, home: Path, redis_url: str | None, *, dims: int = 384) -> None:
        self.settings = settings
        self._redis_url = redis_url
        self.store = open_store(settings, home)
        self.index = open_index(settings, home, dims)
        self._started = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._started:
            return
        async with self._lock:
            if not self._started:
                await self.store.start()
                await self.index.start()
                self._started = True

    @cached_property
    def redis(self):
        return connect(self._redis_url) if self._redis_url else None

    @cached_property
    def sessions(self) -> SessionStore | None:
        if self.redis is None or self.settings.session_turns == 0:
            return None
        return SessionStore(self.redis, turns=self.settings.session_turns, ttl_s=self.settings.session_ttl_s)

    async def aclose(self) -> None:
        if self._started:
            await self.index.close()
            await self.store.close()
            self._started = False
        if "redis" in self.__dict__ and self.redis is not None:
            await self.redis.aclose()
