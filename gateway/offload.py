"""CPU-heavy request work (JSON parsing and validation of big bodies, prompt tokenisation) on a few
threads of the gateway's own, so the event loop keeps answering everyone else meanwhile.

Each tenant holds at most `per_tenant` of the threads at once; its further requests wait their turn
without taking a thread from another tenant. A slot is given back when the work ends, even when the
client that asked for it left before.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

_T = TypeVar("_T")


class Offload:
    def __init__(self, threads: int, per_tenant: int) -> None:
        self._threads = threads
        self._per_tenant = per_tenant
        self._pool: ThreadPoolExecutor | None = None
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._waiting: dict[str, int] = {}

    async def run(self, owner: str, fn: Callable[..., _T], /, *args, **kwargs) -> _T:
        """`fn(*args, **kwargs)` on a worker thread, under the bound of `owner` (the tenant)."""
        tenant = owner
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="gateway-offload")
        slot = self._slots.setdefault(tenant, asyncio.Semaphore(self._per_tenant))
        self._waiting[tenant] = self._waiting.get(tenant, 0) + 1
        try:
            await slot.acquire()
        finally:
            self._waiting[tenant] -= 1
        work = asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        work.add_done_callback(lambda _: self._release(tenant, slot))
        return await asyncio.shield(work)

    def _release(self, tenant: str, slot: asyncio.Semaphore) -> None:
        slot.release()
        if not self._waiting.get(tenant) and slot._value >= self._per_tenant:  # idle: forget the tenant
            self._slots.pop(tenant, None)
            self._waiting.pop(tenant, None)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
