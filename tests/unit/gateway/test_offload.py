"""`Offload`: request work on the gateway's threads, bounded per tenant."""

from __future__ import annotations

import asyncio
import threading

from gateway.offload import Offload


async def test_a_tenant_waits_for_its_own_slot_without_holding_up_another():
    offload = Offload(threads=2, per_tenant=1)
    release = threading.Event()
    try:
        busy = asyncio.create_task(offload.run("a", release.wait, 5))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(offload.run("a", lambda: "a again"))
        assert await asyncio.wait_for(offload.run("b", lambda: "b"), 2) == "b"  # another tenant goes at once
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the tenant's one slot is held
        release.set()
        assert await busy is True and await asyncio.wait_for(waiting, 2) == "a again"
    finally:
        release.set()
        offload.close()
