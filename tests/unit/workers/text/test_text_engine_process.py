"""The text engine in a child process: the same tokens as in this process, aborts and bad requests
answered, and a child that dies ends what it held with an error, then serves again restarted."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict

import pytest

from schemas.enums import FinishReason
from workers.text.engine import TextEngine
from workers.text.engine_process import EngineProcess, EngineUnavailable
from infra.models.loader import LoadedModel, TextModelSpec
from workers.text.sampling import SamplingParams
from workers.text.sequence import StepOutput, StepStats

QUESTIONS = ["What is the capital of France?", "Name three colours.", "Tell me a long story about the sea."]


class Collector:
    """Each request's outputs, and a future per request that resolves with its last one."""

    def __init__(self) -> None:
        self.outputs: dict[str, list[StepOutput]] = defaultdict(list)
        self.finished: dict[str, asyncio.Future] = {}
        self.running_seen = 0
        self.kv_usage_seen = 0.0
        self.steps: list[StepStats] = []

    def __call__(self, outputs: list[StepOutput], running: int, kv_usage: float | None = None,
                 stats: StepStats | None = None) -> None:
        self.running_seen = max(self.running_seen, running)
        self.kv_usage_seen = max(self.kv_usage_seen, kv_usage or 0.0)
        if stats is not None:
            self.steps.append(stats)
        for out in outputs:
            self.outputs[out.request_id].append(out)
            if out.finished:
                self.done(out.request_id).set_result(out)

    def done(self, request_id: str) -> asyncio.Future:
        return self.finished.setdefault(request_id, asyncio.get_running_loop().create_future())

    def text(self, request_id: str) -> str:
        return "".join(o.text_delta for o in self.outputs[request_id])

    def tokens(self, request_id: str) -> list[int]:
        return [t for o in self.outputs[request_id] for t in o.token_ids]


def greedy(n: int = 12) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0.0)


def in_this_process(lm: LoadedModel, prompt: list[int], params: SamplingParams) -> list[int]:
    engine = TextEngine(lm.model, lm.tokenizer)
    engine.add_request("here", prompt, params)
    tokens: list[int] = []
    while engine.has_unfinished():
        for out in engine.step():
            tokens += out.token_ids
    return tokens


@pytest.mark.slow
async def test_child_engine_serves_aborts_and_survives_its_own_death(smollm: LoadedModel) -> None:
    prompts = [smollm.format_chat([{"role": "user", "content": q}]) for q in QUESTIONS]
    seen = Collector()
    engine = EngineProcess(TextModelSpec(), {"max_batch_size": 4}, torch_threads=1, on_outputs=seen)
    served = await engine.start()
    info = engine.info
    try:
        assert info.pid != os.getpid() and info.model_id == smollm.model_id == served.model_id
        assert info.context_length == smollm.context_length == served.context_length

        # three at once: the same greedy tokens as the engine in this process, one by one
        for i, prompt in enumerate(prompts[:2]):
            engine.add(f"r{i}", prompt, greedy())
        engine.add("long", prompts[2], greedy(400))
        await asyncio.wait_for(asyncio.gather(seen.done("r0"), seen.done("r1")), 120)
        for i, prompt in enumerate(prompts[:2]):
            assert seen.tokens(f"r{i}") == in_this_process(smollm, prompt, greedy())
            assert seen.text(f"r{i}") and seen.done(f"r{i}").result().finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
        assert seen.running_seen >= 2
        assert 0 < seen.kv_usage_seen <= 1  # the child reports its KV cache with each step
        # and what each step computed (the engine's own test checks the figures): prefills, then
        # decodes of two or three rows at once
        assert 0 < max(s.prefill_tokens for s in seen.steps) <= sum(map(len, prompts))
        assert max(s.decode_tokens for s in seen.steps) >= 2 and all(s.decode_s >= 0 for s in seen.steps)

        # an abort ends the long one early, with the abort reason
        engine.abort("long")
        aborted = await asyncio.wait_for(seen.done("long"), 60)
        assert aborted.aborted and len(seen.tokens("long")) < 400

        # a request the engine refuses ends with its reason, and the engine goes on
        engine.add("empty", [], greedy())
        refused = await asyncio.wait_for(seen.done("empty"), 60)
        assert refused.finished and "empty" in refused.error

        # the child dies holding a sequence: it ends with an error, and a new child takes over
        engine.add("held", prompts[2], greedy(400))
        while not seen.outputs["held"]:
            await asyncio.sleep(0.05)
        os.kill(info.pid, signal.SIGKILL)
        lost = await asyncio.wait_for(seen.done("held"), 60)
        assert lost.finished and "exited" in lost.error and "retry" in lost.error
        engine.add("after", prompts[0], greedy())  # queued while the new child loads
        again = await asyncio.wait_for(seen.done("after"), 180)
        assert again.finish_reason in (FinishReason.STOP, FinishReason.LENGTH) and seen.tokens("after") == seen.tokens("r0")
        assert engine.info.pid != info.pid and engine.alive
    finally:
        await engine.stop()
    assert not engine.alive


async def test_a_model_that_cannot_load_fails_the_start_with_its_reason(tmp_path) -> None:
    engine = EngineProcess(TextModelSpec(model=str(tmp_path / "no-such-model")), {}, on_outputs=Collector())
    with pytest.raises(EngineUnavailable, match="not available offline"):
        await engine.start()
    assert not engine.alive


async def test_a_request_with_no_engine_to_run_it_ends_at_once() -> None:
    seen = Collector()
    engine = EngineProcess(TextModelSpec(), {}, on_outputs=seen)  # never started (or gave up restarting)
    engine.add("orphan", [1, 2, 3], greedy())
    ended = await asyncio.wait_for(seen.done("orphan"), 5)
    assert ended.finished and "restart the worker" in ended.error and ended.prompt_tokens == 3
