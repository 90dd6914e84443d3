"""TextEngine on the real SmolLM2: batching invariance, joins/leaves, abort, stops, seeds, limits."""

from __future__ import annotations

import os

import pytest
import torch

from schemas.enums import FinishReason
from workers.text.engine import TextEngine, _pack_prompts
from infra.models.loader import LoadedModel
from workers.text.sampling import SamplingParams
from workers.text.sequence import StepOutput

pytestmark = pytest.mark.slow  # loads a real model

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain gravity to a child in one sentence.",
]
#: A user turn long enough (~100 tokens) that its prefill widens a running batch's cache window.
LONG_QUESTION = "Summarise this in one line: " + " ".join(
    f"Day {i}: the baker opened the shop, sold bread, and closed at dusk." for i in range(1, 7)
)


class Result:
    """Everything one request produced, accumulated over steps."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.text = ""
        self.outputs: list[StepOutput] = []

    @property
    def final(self) -> StepOutput:
        return self.outputs[-1]


def collect(outputs: list[StepOutput], results: dict[str, Result]) -> None:
    for out in outputs:
        res = results.setdefault(out.request_id, Result())
        assert not (res.outputs and res.final.finished), f"{out.request_id} produced output after finishing"
        res.tokens += out.token_ids
        res.text += out.text_delta
        res.outputs.append(out)


def drain(engine: TextEngine, results: dict[str, Result] | None = None, max_steps: int = 200) -> dict[str, Result]:
    """Step ``engine`` until idle; returns per-request results."""
    results = {} if results is None else results
    for _ in range(max_steps):
        if not engine.has_unfinished():
            return results
        collect(engine.step(), results)
    raise AssertionError("engine did not finish")


def greedy(max_tokens: int = 16, **kwargs) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, **kwargs)


def new_engine(lm: LoadedModel, **kwargs) -> TextEngine:
    return TextEngine(lm.model, lm.tokenizer, **kwargs)


@pytest.fixture(scope="module")
def prompts(smollm: LoadedModel) -> list[list[int]]:
    return [smollm.format_chat([{"role": "user", "content": q}]) for q in QUESTIONS]


@pytest.fixture(scope="module")
def long_prompt(smollm: LoadedModel) -> list[int]:
    return smollm.format_chat([{"role": "user", "content": LONG_QUESTION}])


def run_alone(lm: LoadedModel, ids: list[int], params: SamplingParams) -> Result:
    engine = new_engine(lm)
    engine.add_request("alone", ids, params)
    return drain(engine)["alone"]


@pytest.fixture(scope="module")
def solo(smollm: LoadedModel, prompts: list[list[int]]) -> list[Result]:
    """Each prompt run greedily alone for 16 tokens: the reference for the batching tests."""
    return [run_alone(smollm, ids, greedy()) for ids in prompts]


def test_solo_matches_transformers_generate(smollm: LoadedModel, prompts: list[list[int]], solo: list[Result]) -> None:
    ids = prompts[1]
    with torch.inference_mode():
        out = smollm.model.generate(
            torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=16,
            do_sample=False, pad_token_id=smollm.tokenizer.pad_token_id,
        )
    assert solo[1].tokens == out[0, len(ids):].tolist()
    assert solo[1].text == smollm.tokenizer.decode(solo[1].tokens, skip_special_tokens=True)


def test_batched_greedy_equals_solo(smollm: LoadedModel, prompts: list[list[int]], solo: list[Result]) -> None:
    engine = new_engine(smollm)
    for i, ids in enumerate(prompts):
        engine.add_request(f"r{i}", ids, greedy())
    results: dict[str, Result] = {}
    collect(engine.step(), results)  # admits and prefills all three together
    assert engine.num_running() == 3
    drain(engine, results)
    for i, ref in enumerate(solo):
        got = results[f"r{i}"]
        assert got.tokens == ref.tokens, f"prompt {i} diverged in a batch"
        assert got.text == ref.text
        assert got.final.finish_reason == ref.final.finish_reason
        assert got.final.prompt_tokens == len(prompts[i])
        assert got.final.completion_tokens == len(ref.tokens)


def test_eos_ends_with_stop_and_no_special_text(solo: list[Result], smollm: LoadedModel) -> None:
    # "What is the capital of France?" is answered in one short sentence, then <|im_end|>.
    first = solo[0]
    assert first.final.finish_reason is FinishReason.STOP
    assert first.tokens[-1] == smollm.tokenizer.eos_token_id
    assert len(first.tokens) < 16
    assert "Paris" in first.text and "<|im_end|>" not in first.text


def test_join_and_leave_mid_run(
    smollm: LoadedModel, prompts: list[list[int]], long_prompt: list[int], solo: list[Result]
) -> None:
    engine = new_engine(smollm)
    engine.add_request("stays", prompts[2], greedy(16))
    engine.add_request("leaves", prompts[1], greedy(4))
    results: dict[str, Result] = {}
    for _ in range(6):
        collect(engine.step(), results)
    assert results["leaves"].final.finished and results["leaves"].final.finish_reason is FinishReason.LENGTH
    assert engine.num_running() == 1
    # A longer prompt joins while "stays" is mid-generation; its prefill widens the cache window.
    engine.add_request("joins", long_prompt, greedy(8))
    engine.add_request("joins-short", prompts[1], greedy(8))
    collect(engine.step(), results)
    assert engine.num_running() == 3
    drain(engine, results)

    assert results["stays"].tokens == solo[2].tokens
    assert results["leaves"].tokens == solo[1].tokens[:4]
    assert results["joins-short"].tokens == solo[1].tokens[:8]
    assert results["joins"].tokens == run_alone(smollm, long_prompt, greedy(8)).tokens


def test_abort_running_and_waiting(smollm: LoadedModel, prompts: list[list[int]], solo: list[Result]) -> None:
    engine = new_engine(smollm, max_batch_size=2)
    engine.add_request("a", prompts[2], greedy())
    engine.add_request("b", prompts[1], greedy())
    engine.add_request("queued", prompts[0], greedy())
    results: dict[str, Result] = {}
    collect(engine.step(), results)
    collect(engine.step(), results)
    assert engine.num_waiting() == 1
    assert engine.abort("a") is True
    assert engine.abort("queued") is True
    assert engine.abort("a") is False  # already aborting
    assert engine.abort("nope") is False
    out = engine.step()
    collect(out, results)
    finals = {o.request_id: o for o in out if o.finished}
    assert finals["a"].aborted and finals["a"].finish_reason is None and finals["a"].token_ids == []
    assert finals["queued"].aborted and finals["queued"].completion_tokens == 0
    assert len(results["a"].tokens) == 2  # prefill token + one decode step, nothing after abort
    drain(engine, results)
    assert results["b"].tokens == solo[1].tokens
    assert not engine.has_unfinished() and engine.abort("b") is False


def test_stop_string_cuts_text(smollm: LoadedModel, prompts: list[list[int]], solo: list[Result]) -> None:
    ref = solo[2].text
    stop = next(word for word in ref.split()[2:] if len(word) >= 4)  # known to occur in the greedy answer
    assert stop in ref
    got = run_alone(smollm, prompts[2], greedy(stop=[stop]))
    assert got.final.finish_reason is FinishReason.STOP
    assert got.text == ref[: ref.index(stop)]
    assert stop not in got.text


def test_unmatched_stop_prefix_is_released(smollm: LoadedModel, prompts: list[list[int]], solo: list[Result]) -> None:
    ref = solo[2].text
    # Its start occurs in the output, so text is held back, but the whole string never does.
    stop = next(word for word in ref.split()[2:] if len(word) >= 4) + "\u2603never"
    got = run_alone(smollm, prompts[2], greedy(stop=[stop]))
    assert got.text == ref
    assert got.final.finish_reason == solo[2].final.finish_reason


def test_max_tokens_gives_length(smollm: LoadedModel, prompts: list[list[int]]) -> None:
    got = run_alone(smollm, prompts[1], greedy(5))
    assert got.final.finish_reason is FinishReason.LENGTH
    assert got.final.completion_tokens == 5
    assert len(got.tokens) == 5


TOPICS = ["the sea", "a mountain village", "an old clock", "a lost cat", "the first snow", "a lighthouse",
          "a desert road", "a market at dawn", "a broken violin", "a river journey"]


def test_greedy_streams_pick_the_same_tokens_alone_and_in_any_batch(smollm: LoadedModel) -> None:
    """Ten prompts of different lengths, 32 greedy tokens each: alone, all admitted at once (one packed
    prefill, then a left-padded batch) and admitted one per step (each prefill joins a running
    batch). In bf16 this fails without the loader's batch-invariant layers (infra/models/invariant.py):
    with plain Linear layers and SDPA, the second stream already diverges at its 23rd token."""
    prompts = [smollm.format_chat([{"role": "user", "content": f"Tell me about {t}." + " Be detailed." * (i % 4)}])
               for i, t in enumerate(TOPICS)]
    alone = [run_alone(smollm, ids, greedy(32)).tokens for ids in prompts]
    for per_step in (len(prompts), 1):
        engine, results, queue = new_engine(smollm), {}, list(enumerate(prompts))
        while queue or engine.has_unfinished():
            for i, ids in queue[:per_step]:
                engine.add_request(f"r{i}", ids, greedy(32))
            del queue[:per_step]
            collect(engine.step(), results)
        assert [results[f"r{i}"].tokens for i in range(len(prompts))] == alone, f"admitted {per_step} per step"


def test_a_direct_decode_step_gives_the_model_calls_bits(smollm: LoadedModel, prompts: list[list[int]]) -> None:
    """The engine decodes through infra.models.llama_decode (the layers' weights without transformers'
    module machinery) where the model allows it: its logits have exactly the bits of model(...) for one
    row and for rows of different lengths (a padded window), and it writes the same keys and values."""
    from infra.models.llama_decode import llama_decode_step

    engine = new_engine(smollm)
    assert engine._decode_step is not None  # the default model is a plain Llama on genloom's attention
    assert new_engine(smollm, direct_decode=False)._decode_step is None
    for count in (1, len(prompts)):
        for i, ids in enumerate(prompts[:count]):
            engine.add_request(f"{count}-{i}", ids, greedy(8))
        for _ in range(3):  # the prefill, then two decode steps: the rows' lengths differ
            engine.step()
        rows, width, cache = engine._running, engine._cache.width, engine._cache
        with torch.inference_mode():  # as the engine's step runs
            direct = engine._decode_logits(rows, width)
            keys = [layer.keys[: len(rows), :, cache.start : cache.end + 1].clone() for layer in cache.layers]
            through_model = engine._decode_logits(rows, width, direct=False)
        assert torch.equal(direct, through_model), f"{count} row(s)"
        assert all(torch.equal(k, layer.keys[: len(rows), :, cache.start : cache.end + 1])
                   for k, layer in zip(keys, cache.layers))
        drain(engine)
    # not a plain Llama on genloom's attention: decodes through model(...)
    sdpa = type(smollm.model.config)(**{**smollm.model.config.to_dict(), "num_hidden_layers": 1})
    sdpa._attn_implementation = "sdpa"
    from transformers import LlamaForCausalLM

    assert llama_decode_step(LlamaForCausalLM(sdpa).eval()) is None
    assert llama_decode_step(LlamaForCausalLM(sdpa).train()) is None
    handle = smollm.model.model.layers[0].mlp.register_forward_hook(lambda *_: None)
    try:  # a hook on a layer would be skipped: decodes through model(...)
        assert llama_decode_step(smollm.model) is None
    finally:
        handle.remove()
    assert llama_decode_step(smollm.model) is not None


def test_a_packed_prefill_attends_per_prompt_with_the_block_masks_result(
        smollm: LoadedModel, prompts: list[list[int]], long_prompt: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Prompts of different lengths sharing the chat template's head, packed: attention computed per
    prompt over its own keys (Segments) gives bit for bit the logits and cache of attention over the
    whole pack under its block mask (bit for bit in bf16, to float32's rounding in float32)."""
    from transformers import DynamicCache

    from infra.models import invariant
    from infra.models.invariant import ATTENTION, LAYOUT_ATTENTION

    pack = _pack_prompts([*prompts, long_prompt], smollm.device)
    assert pack.shared > 0 and len(set(pack.segments.lengths)) > 1

    widest: list[int] = []
    real = invariant.sdpa_attention_forward

    def spy(module, query, *args, **kwargs):
        widest.append(query.shape[2])
        return real(module, query, *args, **kwargs)

    monkeypatch.setattr(invariant, "sdpa_attention_forward", spy)

    def prefill(**extra):
        widest.clear()
        with torch.no_grad():
            out = smollm.model(input_ids=pack.input_ids, attention_mask=pack.attention_mask, position_ids=pack.position_ids,
                               past_key_values=DynamicCache(), use_cache=True, logits_to_keep=pack.last_index, **extra)
        return out, max(widest, default=0)

    masked, masked_width = prefill()
    split, split_width = prefill(genloom_segments=pack.segments)
    assert smollm.model.config._attn_implementation in (ATTENTION, LAYOUT_ATTENTION)
    assert masked_width == pack.input_ids.shape[1]  # one attention over the whole pack
    assert split_width == max(pack.shared, *pack.segments.lengths)  # each part on its own
    if smollm.model.config._attn_implementation == ATTENTION:  # bf16: accumulated in float64, the same bits
        same = torch.equal
    else:  # float32: attention over other shapes sums in another order, to float32's rounding
        def same(a: torch.Tensor, b: torch.Tensor) -> bool:
            return torch.allclose(a, b, rtol=0, atol=2e-4)
    assert same(split.logits, masked.logits)
    assert torch.equal(split.logits.argmax(-1), masked.logits.argmax(-1))
    for a, b in zip(split.past_key_values.layers, masked.past_key_values.layers):
        assert same(a.keys, b.keys) and same(a.values, b.values)


def test_seeded_sampling_is_reproducible_alone_and_batched(smollm: LoadedModel, prompts: list[list[int]]) -> None:
    def sampled(seed: int) -> SamplingParams:
        return SamplingParams(max_tokens=8, temperature=1.0, seed=seed)

    first = run_alone(smollm, prompts[1], sampled(7))
    again = run_alone(smollm, prompts[1], sampled(7))
    assert first.tokens == again.tokens and first.text == again.text

    engine = new_engine(smollm)
    engine.add_request("seeded", prompts[1], sampled(7))
    engine.add_request("other", prompts[2], sampled(99))
    assert drain(engine)["seeded"].tokens == first.tokens

    others = [run_alone(smollm, prompts[1], sampled(seed)).text for seed in (1, 2, 3)]
    assert any(text != first.text for text in others)


def test_failing_sequence_does_not_disturb_others(
    smollm: LoadedModel, prompts: list[list[int]], solo: list[Result]
) -> None:
    bad = greedy(stop=["x"])
    # Simulate a stop configuration that only breaks at run time (bypasses validation).
    object.__setattr__(bad, "stop", (42,))
    engine = new_engine(smollm)
    engine.add_request("bad", prompts[0], bad)
    engine.add_request("good", prompts[1], greedy())
    results = drain(engine)
    assert results["bad"].final.finished and results["bad"].final.finish_reason is None
    assert "TypeError" in (results["bad"].final.error or "")
    assert results["good"].tokens == solo[1].tokens
    assert results["good"].final.error is None


def test_add_request_rejects_bad_requests(smollm: LoadedModel, prompts: list[list[int]]) -> None:
    engine = new_engine(smollm, max_batch_tokens=4096)
    context = smollm.context_length
    with pytest.raises(ValueError, match="context"):
        engine.add_request("long", [42] * context, greedy(1))
    with pytest.raises(ValueError, match="max_tokens"):
        engine.add_request("long2", [42] * (context - 8), greedy(16))
    with pytest.raises(ValueError, match="max_batch_tokens"):
        engine.add_request("big", [42] * 4090, greedy(16))
    with pytest.raises(ValueError, match="empty"):
        engine.add_request("empty", [], greedy())
    with pytest.raises(ValueError, match="token ids"):
        engine.add_request("oov", [smollm.model.config.vocab_size], greedy())
    engine.add_request("ok", prompts[0], greedy(1))
    with pytest.raises(ValueError, match="already in use"):
        engine.add_request("ok", prompts[0], greedy(1))
    assert engine.num_waiting() == 1


def test_batch_size_and_token_budget_bound_admission(smollm: LoadedModel, prompts: list[list[int]]) -> None:
    budget = len(prompts[0]) + 4 + len(prompts[1]) + 4  # room for exactly two reservations
    engine = new_engine(smollm, max_batch_size=8, max_batch_tokens=budget)
    for i in range(3):
        engine.add_request(f"r{i}", prompts[i % 2], greedy(4))
    engine.step()
    assert engine.num_running() == 2 and engine.num_waiting() == 1

    small = new_engine(smollm, max_batch_size=1)
    small.add_request("x", prompts[0], greedy(4))
    small.add_request("y", prompts[1], greedy(4))
    small.step()
    assert small.num_running() == 1 and small.num_waiting() == 1
    assert set(drain(small)) == {"x", "y"}


def test_prefill_budget_limits_admissions_per_step(smollm: LoadedModel, prompts: list[list[int]]) -> None:
    engine = new_engine(smollm, max_prefill_tokens=len(prompts[0]))
    engine.add_request("a", prompts[0], greedy(4))
    engine.add_request("b", prompts[1], greedy(4))
    outputs = engine.step()
    assert [o.request_id for o in outputs] == ["a"]
    assert engine.num_waiting() == 1


def test_logit_bias_forces_and_bans_tokens(smollm: LoadedModel, prompts: list[list[int]], solo: list[Result]) -> None:
    forced = smollm.tokenizer.encode(" banana")[0]
    got = run_alone(smollm, prompts[0], greedy(4, logit_bias={forced: 100}))
    assert got.tokens == [forced] * 4
    first = solo[0].tokens[0]
    banned = run_alone(smollm, prompts[0], greedy(4, logit_bias={first: -100}))
    assert banned.tokens[0] != first
    with pytest.raises(ValueError, match="logit_bias"):
        new_engine(smollm).add_request("x", prompts[0], greedy(2, logit_bias={smollm.model.config.vocab_size: 1}))


def test_penalties_change_repeats_and_batch_like_alone(
    smollm: LoadedModel, prompts: list[list[int]], solo: list[Result]
) -> None:
    plain = run_alone(smollm, prompts[1], greedy(24))
    penalised = run_alone(smollm, prompts[1], greedy(24, frequency_penalty=2.0, presence_penalty=2.0))
    assert penalised.tokens != plain.tokens
    # a penalised greedy request repeats no token it could avoid: fewer repeats than the plain one
    assert len(penalised.tokens) - len(set(penalised.tokens)) <= len(plain.tokens) - len(set(plain.tokens))
    engine = new_engine(smollm)
    engine.add_request("pen", prompts[1], greedy(24, frequency_penalty=2.0, presence_penalty=2.0))
    engine.add_request("plain", prompts[0], greedy())
    engine.add_request("bias", prompts[2], greedy(4, logit_bias={42: 100}))
    results = drain(engine)
    assert results["pen"].tokens == penalised.tokens
    assert results["plain"].tokens == solo[0].tokens  # untouched rows pick as alone
    assert results["bias"].tokens == [42] * 4


def test_logprobs_of_the_chosen_and_top_tokens(smollm: LoadedModel, prompts: list[list[int]], solo: list[Result]) -> None:
    got = run_alone(smollm, prompts[0], greedy(6, logprobs=True, top_logprobs=3))
    assert got.tokens == solo[0].tokens[:6]
    steps = [lp for out in got.outputs for lp in out.logprobs]
    assert [lp.token_id for lp in steps] == got.tokens
    for lp in steps:
        assert lp.logprob <= 0.0 and len(lp.top) == 3
        assert lp.top[0][0] == lp.token_id and lp.top[0][1] == pytest.approx(lp.logprob)  # greedy: the best
        assert lp.top[0][1] >= lp.top[1][1] >= lp.top[2][1]
    assert all(not out.logprobs for out in solo[0].outputs)  # not asked: none computed


def test_kv_cache_usage_counts_the_running_sequences_tokens(smollm: LoadedModel, prompts: list[list[int]]) -> None:
    engine = new_engine(smollm)
    assert engine.kv_cache_usage() == 0.0
    for i, ids in enumerate(prompts):
        engine.add_request(f"r{i}", ids, greedy(max_tokens=4))
    engine.step()  # all three prefilled: their prompts are cached
    first = engine.kv_cache_usage()
    cells = engine._cache.rows_cap * engine._cache.cols_cap
    assert first == pytest.approx(sum(len(ids) for ids in prompts) / cells, abs=3 / cells)
    engine.step()
    assert 0 < first < engine.kv_cache_usage() <= 1  # one more token each, in the same buffers
    drain(engine)
    assert engine.kv_cache_usage() == 0.0


def test_the_worker_exports_the_engines_kv_cache_usage() -> None:
    from prometheus_client import REGISTRY

    from workers.text.handler import TextHandler

    handler = TextHandler(None, served_name="kv-test")
    handler._route([], 2, 0.25)
    assert REGISTRY.get_sample_value("genloom:kv_cache_usage_perc", {"model_name": "kv-test"}) == 0.25
    handler._route([], 0)  # an engine without a KV cache of its own (a remote server) reports none
    assert REGISTRY.get_sample_value("genloom:kv_cache_usage_perc", {"model_name": "kv-test"}) == 0.25


def test_a_cached_prompt_head_is_not_computed_again_and_changes_no_token(
        smollm: LoadedModel, prompts: list[list[int]], solo: list[Result]) -> None:
    """The chat template's head of a prompt the engine prefilled before comes from the prefix cache
    (whole blocks, at least the last token computed): alone, packed with other prompts, and never
    for another salt (tenant); the greedy tokens are those of each prompt alone in a fresh engine."""
    engine = new_engine(smollm)
    block = engine.prefix_cache.block
    engine.add_request("a0", prompts[0], greedy())
    first = drain(engine)
    assert first["a0"].tokens == solo[0].tokens and first["a0"].final.cached_tokens == 0

    engine.add_request("a1", prompts[0], greedy())
    again = drain(engine)["a1"]
    assert again.tokens == solo[0].tokens
    assert again.final.cached_tokens == (len(prompts[0]) - 1) // block * block > 0

    engine.add_request("b", prompts[1], greedy())
    engine.add_request("c", prompts[2], greedy())
    packed = drain(engine)
    head = min(len(p) for p in prompts) - 1
    while any(p[:head] != prompts[0][:head] for p in prompts):
        head -= 1
    for name, i in (("b", 1), ("c", 2)):
        assert packed[name].tokens == solo[i].tokens
        assert packed[name].final.cached_tokens == head // block * block > 0

    engine.add_request("other", prompts[0], greedy(cache_salt="another-tenant"))
    other = drain(engine)["other"]
    assert other.tokens == solo[0].tokens and other.final.cached_tokens == 0
    cached = again.final.cached_tokens + packed["b"].final.cached_tokens + packed["c"].final.cached_tokens
    assert engine.prefix_cache.hits == cached
    assert engine.prefix_cache.queries == len(prompts[0]) * 3 + len(prompts[1]) + len(prompts[2])

    off = new_engine(smollm, prefix_cache_tokens=0)
    for name in ("x", "y"):
        off.add_request(name, prompts[0], greedy())
        result = drain(off)[name]
        assert result.tokens == solo[0].tokens and result.final.cached_tokens == 0
    assert len(off.prefix_cache) == 0


def test_a_prefill_after_a_cached_head_gives_the_whole_prefills_result(
        smollm: LoadedModel, prompts: list[list[int]], long_prompt: list[int]) -> None:
    """Prompts packed after the first 16 or 48 tokens of their common head, those tokens' keys and
    values given as the past: the last tokens' logits and every key and value are those of the
    prefill that computes the head too (one prompt, and four packed), bit for bit where the model is
    batch-invariant (bf16 on CPU); in float32, whose matrix products order their sums by the number of
    rows, to float32's rounding, and the same greedy token."""
    from transformers import DynamicCache

    from infra.models.invariant import ATTENTION

    exact = smollm.model.config._attn_implementation == ATTENTION

    def prefill(pack, past=None):
        cache = DynamicCache()
        for index, (k, v) in enumerate(past or []):
            cache.update(k, v, index)
        with torch.no_grad():
            return smollm.model(input_ids=pack.input_ids, attention_mask=pack.attention_mask,
                                position_ids=pack.position_ids, past_key_values=cache, use_cache=True,
                                logits_to_keep=pack.last_index, genloom_segments=pack.segments)

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return torch.equal(a, b) if exact else torch.allclose(a, b, rtol=0, atol=2e-4)

    for batch, heads in (([long_prompt], (16, 48)), ([*prompts, long_prompt], (16,))):
        whole = prefill(_pack_prompts(batch, smollm.device))
        for cached in heads:
            pack = _pack_prompts(batch, smollm.device, cached=cached)
            assert pack.input_ids.shape[1] == whole.past_key_values.layers[0].keys.shape[2] - cached
            head = [(layer.keys[:, :, :cached], layer.values[:, :, :cached]) for layer in whole.past_key_values.layers]
            after = prefill(pack, head)
            assert same(after.logits, whole.logits), f"{len(batch)} prompts after {cached} cached tokens"
            assert torch.equal(after.logits.argmax(-1), whole.logits.argmax(-1))
            for a, b in zip(after.past_key_values.layers, whole.past_key_values.layers):
                assert same(a.keys, b.keys) and same(a.values, b.values)


def test_each_step_reports_what_it_computed(smollm: LoadedModel, prompts: list[list[int]]) -> None:
    """A step's StepStats: the prompt tokens a prefill computed (not those the prefix cache supplied),
    one token per decoded row, and a time for each phase that ran."""
    engine = new_engine(smollm)
    engine.add_request("a", prompts[0], greedy(4))
    engine.add_request("b", prompts[1], greedy(4))
    engine.step()  # both prompts in one pack: their common head once
    first = engine.last_step
    shared = len(os.path.commonprefix([prompts[0], prompts[1]]))
    assert first.prefill_tokens == len(prompts[0]) + len(prompts[1]) - shared and first.prefill_s > 0
    assert (first.decode_tokens, first.decode_s) == (0, 0.0) and first.tokens == first.prefill_tokens
    engine.step()
    assert (engine.last_step.decode_tokens, engine.last_step.prefill_tokens) == (2, 0)
    assert engine.last_step.decode_s > 0 and engine.last_step.prefill_s == 0.0
    drain(engine)
    engine.add_request("c", prompts[0], greedy(4))  # its head is in the prefix cache now
    engine.step()
    cached = engine.prefix_cache.block * ((len(prompts[0]) - 1) // engine.prefix_cache.block)
    assert cached and engine.last_step.prefill_tokens == len(prompts[0]) - cached
    drain(engine)


def test_the_worker_exports_each_engine_steps_tokens_and_phase_times() -> None:
    from prometheus_client import REGISTRY

    from workers.text.handler import TextHandler
    from workers.text.sequence import StepStats

    def sample(name: str, **labels) -> float:
        return REGISTRY.get_sample_value(name, {"model_name": "step-test", **labels}) or 0.0

    handler = TextHandler(None, served_name="step-test")
    handler._route([], 3, 0.5, StepStats(decode_tokens=3, decode_s=0.02, prefill_tokens=90, prefill_s=0.4,
                                         prefill_threads=2))
    handler._route([], 3, 0.5, StepStats(decode_tokens=3, decode_s=0.03))
    assert sample("genloom:iteration_tokens_total_count") == 2
    assert sample("genloom:iteration_tokens_total_sum") == 96
    assert sample("genloom:iteration_tokens_total_bucket", le="8.0") == 1  # the decode-only step
    assert sample("genloom:engine_step_seconds_count", phase="decode") == 2
    assert sample("genloom:engine_step_seconds_sum", phase="decode") == pytest.approx(0.05)
    assert sample("genloom:engine_step_seconds_count", phase="prefill") == 1
    assert sample("genloom:engine_prefills_total", threads="2") == 1  # a lone stream's prompt on 2 threads
    handler._route([], 0)  # an engine server reports no steps of ours
    assert sample("genloom:iteration_tokens_total_count") == 2


def test_the_worker_counts_the_prefix_caches_queries_and_hits() -> None:
    from prometheus_client import REGISTRY

    from workers.text.handler import TextHandler

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(f"genloom:prefix_cache_{name}_total", {"model_name": "prefix-test"}) or 0.0

    def out(request_id: str, finished: bool, completion: int, cached: int) -> StepOutput:
        return StepOutput(request_id=request_id, text_delta="", token_ids=[], finished=finished,
                          finish_reason=FinishReason.STOP if finished else None, prompt_tokens=90,
                          completion_tokens=completion, cached_tokens=cached)

    handler = TextHandler(None, served_name="prefix-test")
    handler._route([out("a", False, 1, 48), out("b", True, 3, 48), out("c", True, 0, 0)], 1, 0.5)
    assert (sample("queries"), sample("hits")) == (90, 48)  # once per prefilled request, when it ends
    handler._route([out("d", True, 2, 0)], 0)  # an engine server's outputs: no prefix cache of ours
    assert (sample("queries"), sample("hits")) == (90, 48)
