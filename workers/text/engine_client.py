"""`EngineClient`: the text handler's one view of its engine, wherever the engine runs.

Two implementations, chosen once when the handler is built (vLLM's EngineCoreClient split):
`InProcessEngine` (engine_thread.py) steps the engine in a thread of this process, and
`EngineProcess` (engine_process.py) in a child process of its own. Both take additions and
aborts, and call `on_outputs(outputs, running)` on the event loop with each step's outputs and the
size of the running batch. The helpers below are the engine-side steps both share.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from workers.errors import batch_failure_detail

from .sampling import SamplingParams
from .sequence import StepOutput

log = logging.getLogger(__name__)

#: receives one step's outputs and the size of the running batch, on the event loop; the built-in
#: engine adds its KV cache's usage (0..1) and the step's StepStats
OnOutputs = Callable[..., None]


class ServedModel(Protocol):
    """What the handler needs of the served model: its name, placement, context and chat template."""

    model_id: str
    revision: str | None
    device: Any  #: where the weights are (a torch.device, or its name when they are in another process)
    dtype: Any  #: their dtype (a torch.dtype, or its name)

    @property
    def dtype_name(self) -> str:
        """What the model computes in, as reported: ``float32``, ``bfloat16``, ``int8`` (weights), ..."""
        ...

    @property
    def context_length(self) -> int: ...

    def format_chat(self, messages: list[dict[str, str]]) -> list[int]: ...

    def format_text(self, text: str) -> list[int]: ...

    def token_text(self, token_id: int) -> str: ...


class EngineClient(Protocol):
    async def start(self) -> ServedModel:
        """Load the model and warm the engine up; returns what the handler needs of the model."""

    def add(self, request_id: str, prompt: list[int], params: SamplingParams) -> None:
        """Queue a request; its outputs arrive through `on_outputs`, the last one `finished`."""

    def abort(self, request_id: str) -> None:
        """Stop a request; its last output comes `aborted`."""

    async def stop(self) -> None:
        """Stop the engine; outputs of requests still held are not delivered."""


def error_output(request_id: str, prompt_tokens: int, error: str) -> StepOutput:
    """The last output of a request that failed."""
    return StepOutput(request_id=request_id, text_delta="", token_ids=[], finished=True, finish_reason=None,
                      prompt_tokens=prompt_tokens, completion_tokens=0, error=error)


def warm_up(engine, prompt: list[int]) -> None:
    """Run one tiny request so the first real one does not pay for lazy initialisation."""
    engine.add_request("__warmup__", prompt, SamplingParams(max_tokens=2, temperature=0.0))
    while engine.has_unfinished():
        engine.step()


def add_request(engine, request_id: str, prompt: list[int], params: SamplingParams, active: set[str],
                outputs: list[StepOutput]) -> None:
    """Add a request to the engine, or end it at once with the reason the engine refused it."""
    try:
        engine.add_request(request_id, prompt, params)
    except ValueError as exc:
        outputs.append(error_output(request_id, len(prompt), str(exc)))
    else:
        active.add(request_id)


def step(engine, active: set[str]) -> list[StepOutput]:
    """One engine step. If the engine itself breaks, every request it holds ends with the error
    and the engine goes on serving. Requests that finished leave `active`."""
    try:
        outputs = engine.step()
    except Exception as exc:
        log.exception("engine step failed")
        outputs = []
        detail = batch_failure_detail(exc, len(active))  # the requests may be different tenants'
        for request_id in active:
            engine.abort(request_id)
            outputs.append(error_output(request_id, 0, detail))
        active.clear()
    for out in outputs:
        if out.finished:
            active.discard(out.request_id)
    return outputs


__all__ = ["EngineClient", "OnOutputs", "ServedModel", "add_request", "error_output", "step", "warm_up"]

