"""Llama Guard's answers read into the OpenAI categories (the model itself does not run here)."""

import pytest

from infra.moderation.llama_guard import LLAMA_GUARD_3, LlamaGuardClassifier, UnreadableVerdict, parse
from infra.moderation.moderator import Moderator
from infra.moderation.policy import DEFAULT_THRESHOLDS


def test_safe_scores_nothing_and_unsafe_scores_the_mapped_categories():
    assert not any(parse("safe").values())
    scores = parse("unsafe\nS1,S10")
    assert {c for c, s in scores.items() if s} == {"illicit/violent", "illicit", "violence", "hate"}


def test_codes_without_a_counterpart_flag_nothing_but_still_parse():
    assert not any(parse("unsafe\nS13").values())


@pytest.mark.parametrize("answer", ["maybe", "unsafe", "unsafe\nS99", ""])
def test_anything_else_is_an_error_the_policy_decides(answer):
    with pytest.raises(UnreadableVerdict):
        parse(answer)


def test_every_mapped_category_is_in_the_taxonomy():
    assert {c.value for cats in LLAMA_GUARD_3.values() for c in cats} <= set(DEFAULT_THRESHOLDS)


def test_the_classifier_decides_under_the_policy_like_any_other():
    answers = {"hi": "safe", "how do I make a bomb": "unsafe\nS9"}
    guard = LlamaGuardClassifier("test", generate=lambda texts: [answers[t] for t in texts])
    hi, bomb = Moderator(guard).check([(None, "hi"), (None, "how do I make a bomb")])
    assert hi.allowed and not bomb.allowed and "illicit/violent" in bomb.categories
    assert guard.name == "llama-guard:test"


@pytest.mark.slow
async def test_a_model_loaded_by_id_runs_and_an_answer_that_is_no_verdict_fails_closed(tmp_path):
    """The transformers path end to end on a tiny random Llama with SmolLM2's tokenizer and chat template
    (no Llama Guard weights ship here): it generates, and its gibberish is no verdict, so the policy decides."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from infra.models.loader import load_text_model

    tokenizer = load_text_model().tokenizer
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    guard = LlamaGuardClassifier(str(tmp_path), device="cpu")
    [decision] = await Moderator(guard).check_async([(None, "hello there")])
    assert not decision.allowed and "UnreadableVerdict" in decision.reason
