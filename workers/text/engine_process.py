"""The text engine in a child process of its own, so its steps never take turns with the worker's
event loop for the GIL.

In one process, the worker's event loop (Kafka polls, event encoding, acknowledgements) and the
engine's steps, which are Python-heavy around every kernel, share one GIL: on CPU that made each
step about a fifth slower. Here the engine loop runs in a spawned child, the split vLLM V1 makes
between its API server and its engine core. The worker sends additions and aborts down a pipe;
the child applies them between steps and sends each step's outputs back. The worker keeps only
the tokenizer, for its checks and the chat template.

If the child dies, every sequence it held ends with a retryable error and a new child is started;
a job submitted while none can run ends with an error at once, never waits for nothing.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass
from typing import Any

import torch

from infra.models.loader import ServedTokenizer, load_text_model, load_text_tokenizer, prepare_text_model

from . import engine_client
from .engine import TextEngine
from .engine_client import OnOutputs, error_output
from .sampling import SamplingParams
from .sequence import StepOutput

log = logging.getLogger(__name__)

# parent → child
_ADD, _ABORT, _STOP = "add", "abort", "stop"
# child → parent
_READY, _OUTPUTS, _FATAL = "ready", "outputs", "fatal"

#: most times a dead engine process is restarted before the worker gives up on it
MAX_RESTARTS = 3


@dataclass(frozen=True)
class EngineInfo:
    """What the child reports once its model is loaded and warmed up."""

    model_id: str
    revision: str | None
    device: str
    dtype: str
    context_length: int
    pid: int


class EngineUnavailable(RuntimeError):
    """The engine process could not be started (its model failed to load, or it kept dying)."""


# -- the child ------------------------------------------------------------------------------------


def _engine_main(conn, spec, engine_args: dict[str, Any], torch_threads: int) -> None:
    """Load and warm up the model, report, then step while anything is unfinished."""
    # the worker decides when this process ends (a stop message, or EOF when the worker is gone):
    # a Ctrl-C or SIGTERM to the process group must not kill the engine under a worker shutting down
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if torch_threads:
        torch.set_num_threads(torch_threads)
    try:
        loaded = load_text_model(spec)
        engine = TextEngine(loaded.model, loaded.tokenizer, device=loaded.device, **engine_args)
        engine_client.warm_up(engine, loaded.format_chat([{"role": "user", "content": "Hi"}]))
    except Exception as exc:  # reported to the worker, which fails to start with this message
        conn.send((_FATAL, f"{type(exc).__name__}: {exc}"))
        return
    conn.send((_READY, EngineInfo(loaded.model_id, loaded.revision, str(loaded.device),
                                  loaded.dtype_name, loaded.context_length, os.getpid())))
    active: set[str] = set()
    while True:
        outputs: list[StepOutput] = []
        try:
            if not engine.has_unfinished() and not _apply(engine, conn.recv(), active, outputs):
                return  # idle: the recv above blocked until there was work
            while conn.poll():
                if not _apply(engine, conn.recv(), active, outputs):
                    return
        except (EOFError, OSError):
            return  # the worker went away
        if engine.has_unfinished():
            outputs += engine_client.step(engine, active)
        if outputs:
            try:
                conn.send((_OUTPUTS, outputs, engine.num_running(), engine.kv_cache_usage(), engine.last_step))
            except OSError:
                return  # the worker went away


def _apply(engine, message: tuple, active: set[str], outputs: list[StepOutput]) -> bool:
    """Apply one message from the worker; False means stop."""
    kind = message[0]
    if kind == _ADD:
        _, request_id, prompt, params = message
        engine_client.add_request(engine, request_id, prompt, params, active, outputs)
    elif kind == _ABORT:
        engine.abort(message[1])
    elif kind == _STOP:
        return False
    return True


# -- the worker's side ---------------------------------------------------------------------------


class EngineProcess:
    """An `EngineClient` whose engine runs in a child process. `on_outputs(outputs, running)` is
    called on the event loop with each step's outputs and the size of the running batch."""

    def __init__(self, spec, engine_args: dict[str, Any], *, torch_threads: int = 0,
                 on_outputs: OnOutputs) -> None:
        self._spec = spec
        self._engine_args = engine_args
        self._torch_threads = torch_threads
        self._on_outputs = on_outputs
        self._proc = None
        self._conn = None
        self._ready: asyncio.Future | None = None
        self._held: dict[str, int] = {}  # request id → prompt tokens, for sequences the child holds
        self._backlog: list[tuple] = []  # messages sent while a new child starts
        self._restarts = 0
        self._restarting: asyncio.Task | None = None
        self._stopping = False
        self.info: EngineInfo | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    async def start(self) -> ServedTokenizer:
        """Spawn the child and wait until its model is loaded (EngineUnavailable if it cannot be);
        returns the tokenizer side of the model, described as the child reported it."""
        await asyncio.to_thread(prepare_text_model, self._spec)  # build the default's cache once, here
        try:
            await self._spawn()
        except BaseException:
            await self._close()
            raise
        self._flush_backlog()
        info = self.info
        return await asyncio.to_thread(load_text_tokenizer, self._spec, device=info.device, dtype=info.dtype,
                                       context_length=info.context_length)

    def add(self, request_id: str, prompt: list[int], params: SamplingParams) -> None:
        if self._restarting is None and not self.alive:
            # no engine and none coming: end at once rather than wait for nothing
            outputs = [error_output(request_id, len(prompt), "the text engine process is not running (it kept"
                                    " dying; see the worker's log): restart the worker, then retry the job")]
            asyncio.get_running_loop().call_soon(self._on_outputs, outputs, 0)
            return
        self._held[request_id] = len(prompt)
        self._send((_ADD, request_id, prompt, params))

    def abort(self, request_id: str) -> None:
        if request_id in self._held:
            self._send((_ABORT, request_id))

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        if self._restarting is not None:
            self._restarting.cancel()
            await asyncio.gather(self._restarting, return_exceptions=True)
        if self._conn is not None and self.alive:
            try:
                self._conn.send((_STOP,))
            except OSError:
                pass
        await self._close(timeout)

    # -- internals ---------------------------------------------------------------------------

    def _send(self, message: tuple) -> None:
        if self._ready is None or not self._ready.done() or self._restarting is not None:
            self._backlog.append(message)
            return
        try:
            self._conn.send(message)
        except OSError:  # the child is gone; _readable sees the EOF and handles it
            pass

    def _readable(self) -> None:
        try:
            while self._conn.poll():
                message = self._conn.recv()
                kind = message[0]
                if kind == _OUTPUTS:
                    _, outputs, running, kv_usage, stats = message
                    for out in outputs:
                        if out.finished:
                            self._held.pop(out.request_id, None)
                    self._on_outputs(outputs, running, kv_usage, stats)
                elif kind == _READY and not self._ready.done():
                    self._ready.set_result(message[1])
                elif kind == _FATAL and not self._ready.done():
                    self._ready.set_exception(EngineUnavailable(f"the text engine failed to start: {message[1]}"))
        except (EOFError, OSError):
            self._exited()

    def _exited(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._conn.fileno())
        self._proc.join(timeout=1.0)
        code = self._proc.exitcode
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(EngineUnavailable(f"the text engine process exited while starting (code {code})"))
            return
        if self._stopping:
            return
        held, self._held = self._held, {}
        log.error("the text engine process exited (code %s) holding %d sequences", code, len(held))
        outputs = [error_output(rid, n, f"the text engine process exited (code {code}); retry the job")
                   for rid, n in held.items()]
        if outputs:
            self._on_outputs(outputs, 0)
        if self._restarts >= MAX_RESTARTS:
            log.error("the text engine process died %d times: not restarting it", self._restarts + 1)
            return
        self._restarts += 1
        self._restarting = loop.create_task(self._restart())

    async def _restart(self) -> None:
        try:
            await self._close()
            await self._spawn()
        except EngineUnavailable as exc:
            log.error("%s", exc)
            backlog, self._backlog = self._backlog, []
            for message in backlog:  # additions made while it restarted: nothing will run them
                if message[0] == _ADD:
                    self._held.pop(message[1], None)
                    self._on_outputs([error_output(message[1], len(message[2]), str(exc))], 0)
            return
        finally:
            self._restarting = None
        log.info("text engine process restarted (pid %d)", self.info.pid)
        self._flush_backlog()

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")  # never fork a process holding torch or threads
        parent, child = context.Pipe(duplex=True)
        self._proc = context.Process(target=_engine_main, name="genloom-text-engine", daemon=True,
                                     args=(child, self._spec, self._engine_args, self._torch_threads))
        self._proc.start()
        child.close()  # the child holds its end; EOF here then means the child is gone
        self._conn = parent
        self._ready = loop.create_future()
        loop.add_reader(parent.fileno(), self._readable)
        self.info = await self._ready

    def _flush_backlog(self) -> None:
        backlog, self._backlog = self._backlog, []
        for message in backlog:
            self._send(message)

    async def _close(self, timeout: float = 5.0) -> None:
        if self._conn is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._conn.fileno())
            except (ValueError, OSError):
                pass
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            await asyncio.to_thread(self._proc.join, timeout)
            if self._proc.is_alive():
                self._proc.kill()
                await asyncio.to_thread(self._proc.join, timeout)
