"""`InProcessEngine`: the text engine in this process, stepped in a thread.

The engine is not thread-safe, so one asyncio task owns it: additions and aborts wait in lists
until the task applies them between steps, and each step runs in a thread so the event loop keeps
serving. Use it where a child process cannot be spawned, or for tests; `EngineProcess` keeps the
engine's steps off the worker's GIL.
"""

from __future__ import annotations

import asyncio

from infra.models.loader import LoadedModel, TextModelSpec, load_text_model

from . import engine_client
from .engine import TextEngine
from .engine_client import OnOutputs
from .sampling import SamplingParams

#: event-loop turns given to the jobs between engine steps: a job takes its output and sends its
#: event, then aiokafka's sender task writes the batch to the socket
_FLUSH_TURNS = 3


class InProcessEngine:
    """An `EngineClient` whose engine runs in this process."""

    def __init__(self, spec: TextModelSpec, engine_args: dict, *, on_outputs: OnOutputs) -> None:
        self._spec = spec
        self._engine_args = engine_args
        self._on_outputs = on_outputs
        self._adds: list[tuple[str, list[int], SamplingParams]] = []
        self._aborts: list[str] = []
        self._active: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.loaded: LoadedModel | None = None
        self.engine: TextEngine | None = None

    async def start(self) -> LoadedModel:
        if self.loaded is None:
            self.loaded = await asyncio.to_thread(load_text_model, self._spec)
        self.engine = TextEngine(self.loaded.model, self.loaded.tokenizer, device=self.loaded.device,
                                 **self._engine_args)
        prompt = self.loaded.format_chat([{"role": "user", "content": "Hi"}])
        await asyncio.to_thread(engine_client.warm_up, self.engine, prompt)
        self._task = asyncio.create_task(self._loop(), name="text-engine-loop")
        return self.loaded

    def add(self, request_id: str, prompt: list[int], params: SamplingParams) -> None:
        self._adds.append((request_id, prompt, params))
        self._wake.set()

    def abort(self, request_id: str) -> None:
        self._aborts.append(request_id)
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        engine = self.engine
        while True:
            refused = self._apply_pending(engine)
            if refused:
                self._on_outputs(refused, engine.num_running())
            if not engine.has_unfinished():
                self._wake.clear()
                if not self._adds and not self._aborts:
                    await self._wake.wait()
                continue
            outputs = await asyncio.to_thread(engine_client.step, engine, self._active)
            self._on_outputs(outputs, engine.num_running(), engine.kv_cache_usage(), engine.last_step)
            # let the jobs hand this step's tokens to the producer, and the producer write them,
            # before the next step's thread competes with them for the GIL
            for _ in range(_FLUSH_TURNS):
                await asyncio.sleep(0)

    def _apply_pending(self, engine: TextEngine) -> list:
        """Apply the additions and aborts made since the last step; returns the refused additions."""
        refused: list = []
        adds, self._adds = self._adds, []
        for request_id, prompt, params in adds:
            engine_client.add_request(engine, request_id, prompt, params, self._active, refused)
        aborts, self._aborts = self._aborts, []
        for request_id in aborts:
            engine.abort(request_id)
        return refused
