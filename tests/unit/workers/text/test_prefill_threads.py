"""A prefill at a quiet engine on more torch threads (`prefill_threads`): when it is used, that the
engine's own count comes back, that tokens do not change, and that a CPU whose results would change
keeps one count. The one place in the tests that runs torch on two threads, for single prefills."""

from __future__ import annotations

import logging
import os
import time

import pytest
import torch

from infra.models.loader import LoadedModel, TextModelSpec, load_text_model
from workers.text import engine as engine_module
from workers.text.engine import TextEngine, _prefill_agrees
from workers.text.sampling import SamplingParams

from .test_text_engine import QUESTIONS, collect, drain

pytestmark = pytest.mark.slow  # loads a real model


@pytest.fixture()
def one_thread():
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def smollm_float32(smollm: LoadedModel) -> LoadedModel:
    """The model in float32 as well, the engine's path on a CPU without native bf16 (where it is
    already float32, the same model)."""
    return smollm if smollm.dtype == torch.float32 else load_text_model(TextModelSpec(dtype="float32"))


@pytest.fixture(params=["auto", "float32"])
def model(request, smollm: LoadedModel) -> LoadedModel:
    return smollm if request.param == "auto" else request.getfixturevalue("smollm_float32")


def _prompts(smollm: LoadedModel) -> list[list[int]]:
    return [smollm.format_chat([{"role": "user", "content": q}]) for q in QUESTIONS]


def _watch_threads(model) -> tuple[list[tuple[str, int]], object]:
    """Record each forward pass's kind (prefill or decode) and the torch threads it ran on."""
    seen: list[tuple[str, int]] = []

    def hook(_module, _args, kwargs):
        seen.append(("decode" if kwargs.get("genloom_rows") is not None else "prefill", torch.get_num_threads()))

    return seen, model.register_forward_pre_hook(hook, with_kwargs=True)


def test_a_prefill_at_a_quiet_engine_takes_the_prefill_threads_and_joining_ones_do_not(
    model: LoadedModel, one_thread
) -> None:
    smollm = model
    # through model(...), where the hook sees decode steps too
    engine = TextEngine(smollm.model, smollm.tokenizer, max_batch_size=4, prefill_threads=2, direct_decode=False)
    assert engine.prefill_threads == 2  # this CPU's check passed (it holds on the CPUs we run on)
    first, second = _prompts(smollm)[:2]
    seen, handle = _watch_threads(smollm.model)
    try:
        engine.add_request("alone", first, SamplingParams(max_tokens=6, temperature=0.0))
        engine.step()  # nothing decoding: prefilled on 2 threads
        assert torch.get_num_threads() == 1 and engine.last_step.prefill_threads == 2
        engine.step()  # one decode step on the engine's own thread
        engine.add_request("joins", second, SamplingParams(max_tokens=3, temperature=0.0))
        engine.step()  # decodes "alone", then prefills "joins" beside a running sequence: 1 thread
        assert engine.last_step.prefill_threads == 1
        drain(engine)
    finally:
        handle.remove()
    assert seen[:4] == [("prefill", 2), ("decode", 1), ("decode", 1), ("prefill", 1)]
    assert {threads for kind, threads in seen if kind == "decode"} == {1}
    assert torch.get_num_threads() == 1


def test_a_quiet_engine_that_held_several_requests_keeps_its_own_count_until_it_has_been_lone(
    model: LoadedModel, one_thread
) -> None:
    """Streams that overlap (a closed loop of several clients) keep the engine's own count even when each
    wave's first prompt meets a quiet engine; a stream that has been alone for ``lone_s`` switches."""
    smollm = model
    engine = TextEngine(smollm.model, smollm.tokenizer, max_batch_size=4, prefill_threads=2, lone_s=1.0,
                        direct_decode=False)
    first, second, third = _prompts(smollm)[:3]
    seen, handle = _watch_threads(smollm.model)
    try:
        engine.add_request("a", first, SamplingParams(max_tokens=2, temperature=0.0))
        engine.add_request("b", second, SamplingParams(max_tokens=2, temperature=0.0))
        drain(engine)  # two at once: prefilled together on 1 thread
        engine.add_request("c", third, SamplingParams(max_tokens=2, temperature=0.0))
        engine.step()  # a quiet engine, but it held two requests within lone_s: 1 thread
        drain(engine)
        time.sleep(1.05)  # alone for lone_s since
        engine.add_request("d", first, SamplingParams(max_tokens=2, temperature=0.0))
        engine.step()  # lone: 2 threads
        drain(engine)
    finally:
        handle.remove()
    assert [threads for kind, threads in seen if kind == "prefill"] == [1, 1, 2]
    assert engine.last_step.prefill_threads == 0  # the last step decoded only
    assert {threads for kind, threads in seen if kind == "decode"} == {1}
    assert torch.get_num_threads() == 1


def test_greedy_tokens_are_the_same_with_and_without_prefill_threads(model: LoadedModel, one_thread) -> None:
    """Each prompt arrives at a quiet engine (a 2-thread prefill with the setting) and the last joins a
    running batch (1 thread either way): every stream's tokens match an engine that never switches."""
    smollm = model
    prompts = _prompts(smollm)

    def run(prefill_threads: int | None) -> dict[str, list[int]]:
        engine = TextEngine(smollm.model, smollm.tokenizer, max_batch_size=4, prefill_threads=prefill_threads)
        results: dict = {}
        for index, prompt in enumerate(prompts[:-1]):
            engine.add_request(str(index), prompt, SamplingParams(max_tokens=12, temperature=0.0))
            drain(engine, results)
        engine.add_request("a", prompts[0], SamplingParams(max_tokens=12, temperature=0.0))
        collect(engine.step(), results)
        engine.add_request("b", prompts[-1], SamplingParams(max_tokens=12, temperature=0.0))
        drain(engine, results)
        return {rid: res.tokens for rid, res in results.items()}

    switched, plain = run(2), run(None)
    assert set(switched) == {"0", "1", "a", "b"}
    assert all(len(tokens) >= 4 for tokens in switched.values()), switched
    assert switched == plain


def test_the_check_refuses_a_thread_count_that_changes_results(
    smollm: LoadedModel, one_thread, monkeypatch, caplog
) -> None:
    class ThreadSensitive(torch.nn.Module):
        """The real model, with its logits nudged when it runs on more than one thread."""

        def __init__(self, model) -> None:
            super().__init__()
            self.inner, self.config = model, model.config

        def forward(self, **kwargs):
            out = self.inner(**kwargs)
            if torch.get_num_threads() > 1:
                out.logits = out.logits + torch.finfo(out.logits.dtype).eps * out.logits.abs().max()
            return out

    sensitive = ThreadSensitive(smollm.model)
    exact = smollm.model.dtype != torch.float32
    assert _prefill_agrees(smollm.model, smollm.device, 1, 1, exact=exact)
    assert not _prefill_agrees(sensitive, smollm.device, 1, 2, exact=True)
    assert torch.get_num_threads() == 1

    monkeypatch.setattr(engine_module, "_prefill_agrees", lambda *args, **kwargs: False)
    with caplog.at_level(logging.WARNING, logger=engine_module.__name__):
        engine = TextEngine(smollm.model, smollm.tokenizer, prefill_threads=2)
    assert engine.prefill_threads is None
    assert "does not give the" in caplog.text
    # none asked for, or the engine's own count: no switch, no check
    assert TextEngine(smollm.model, smollm.tokenizer, prefill_threads=1).prefill_threads is None
    monkeypatch.setattr(engine_module, "_prefill_agrees", lambda *args, **kwargs: True)
    with pytest.raises(ValueError, match="prefill_threads"):
        TextEngine(smollm.model, smollm.tokenizer, prefill_threads=-1)


def test_the_worker_setting_is_every_core_unless_set(monkeypatch) -> None:
    """GENLOOM_TEXT_PREFILL_THREADS reaches the engine: auto (the default) asks for every core of the worker's
    affinity, 0 for none (the engine's own count), a number for that many; anything else is refused."""
    from infra.models.settings import TextSettings
    from workers.text.handler import create_handler

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("GENLOOM_TEXT_PREFILL_THREADS", raising=False)
    assert create_handler().engine._engine_args["prefill_threads"] == cores
    for value, want in (("0", None), ("3", 3), ("auto", cores)):
        monkeypatch.setenv("GENLOOM_TEXT_PREFILL_THREADS", value)
        assert create_handler().engine._engine_args["prefill_threads"] == want
    for bad in ("many", "-1"):
        monkeypatch.setenv("GENLOOM_TEXT_PREFILL_THREADS", bad)
        with pytest.raises(ValueError, match="prefill_threads"):
            TextSettings()
