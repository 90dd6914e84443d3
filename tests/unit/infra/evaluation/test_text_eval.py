"""Perplexity scoring on models whose answer is known, and the held-out text sets."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from infra.evaluation.text import load_references, sklearn_prose, token_nll

VOCAB = 11


class Uniform(torch.nn.Module):
    """Every token equally likely: perplexity is the vocabulary size."""

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=torch.zeros(*x.shape, VOCAB))


class Oracle(torch.nn.Module):
    """Knows that token t is followed by (t + 1) % VOCAB, with ``confidence`` logits to spare."""

    def __init__(self, confidence: float) -> None:
        super().__init__()
        self.confidence = confidence

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=torch.nn.functional.one_hot((x + 1) % VOCAB, VOCAB).float() * self.confidence)


IDS = torch.arange(40) % VOCAB  # 0 1 2 ... 10 0 1 ...


@pytest.mark.parametrize("window", [4, 7, 64])
def test_every_token_but_the_first_is_scored_once_whatever_the_window(window: int) -> None:
    nll, count = token_nll(Uniform(), IDS, window=window)
    assert count == len(IDS) - 1
    assert math.exp(nll / count) == pytest.approx(VOCAB)


def test_perplexity_is_ordered_by_how_well_the_model_knows_the_text() -> None:
    ppl = [math.exp(nll / n) for nll, n in (token_nll(m, IDS, window=8) for m in
                                          (Uniform(), Oracle(1.0), Oracle(5.0), Oracle(20.0)))]
    assert ppl == sorted(ppl, reverse=True)
    assert ppl[-1] == pytest.approx(1.0, abs=1e-6)


def test_a_tiny_random_llama_has_a_finite_perplexity_near_its_vocabulary() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    ids = torch.randint(0, 64, (50,), generator=torch.Generator().manual_seed(1))
    nll, n = token_nll(model, ids, window=16)
    assert n == 49 and math.isfinite(nll)
    assert 20 < math.exp(nll / n) < 200  # an untrained model is close to uniform over 64 tokens


def test_the_held_out_text_sets() -> None:
    refs = load_references()
    assert len(refs) == 20 and all(r.prompt.strip() and r.reference.strip() for r in refs)
    prose = sklearn_prose()
    assert len(prose) > 30 and sum(len(p.split()) for p in prose) > 1500
    assert not any(mark in p for p in prose for mark in (":func:", "``", ".. ", "===="))
