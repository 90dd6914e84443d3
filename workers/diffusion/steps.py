"""Per-step progress and cancellation for any diffusers pipeline (image and video)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diffusers import DiffusionPipeline

OnStep = Callable[[int, int], None]
ShouldStop = Callable[[], bool]


class GenerationCancelled(Exception):
    """Raised from inside the denoising loop when the caller asked to stop."""

    def __init__(self, steps_done: int) -> None:
        super().__init__(f"generation cancelled after {steps_done} step(s)")
        self.steps_done = steps_done


def check_stop(should_stop: ShouldStop | None, steps_done: int = 0) -> None:
    if should_stop is not None and should_stop():
        raise GenerationCancelled(steps_done)


def step_callback(on_step: OnStep | None, should_stop: ShouldStop | None):
    """A `callback_on_step_end` that reports each step and stops between steps when asked."""

    def step_end(pipe: DiffusionPipeline, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        # Runs once per denoising step (hot loop): keep it to two calls.
        if on_step is not None:
            on_step(i + 1, pipe.num_timesteps)
        check_stop(should_stop, i + 1)
        return tensors

    return step_end
