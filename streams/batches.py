"""Natural batching for faust agents: no timer, no added latency.

faust's ``take_events(max, within)`` re-arms a ``within`` timer on every loop, so a lone event
waits for it and an idle agent wakes hundreds of times a second. Here the first event is handled
at once, and whatever arrived while a batch was being handled makes up the next batch, so batches
grow exactly when the agent falls behind. Events are acknowledged only after their batch was
handled (the caller's loop body ran), which keeps delivery at-least-once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator


async def natural_batches(stream, max_: int) -> AsyncIterator[list]:
    """Lists of at most `max_` events: everything already queued on the stream's channel."""
    enable_acks = stream.enable_acks
    stream.enable_acks = False  # acked below, once the batch was handled
    batch: list = []
    try:
        async for event in stream.events():
            batch.append(event)
            if len(batch) < max_ and not stream.channel.empty():
                continue  # more is queued already: take it into this batch
            yield batch
            for done in batch:
                await stream.ack(done)
            batch = []
    finally:
        stream.enable_acks = enable_acks
