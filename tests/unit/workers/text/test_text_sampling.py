"""SamplingParams validation and the per-request Sampler."""

from __future__ import annotations

import pytest
import torch

from workers.text.sampling import MAX_STOP_STRINGS, Sampler, SamplingParams


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"stop": "###"}, "list of strings"),
        ({"stop": [""]}, "non-empty"),
        ({"stop": [3]}, "non-empty string"),
        ({"stop": ["x"] * (MAX_STOP_STRINGS + 1)}, "at most"),
        ({"stop": ["x" * 1000]}, "limited"),
        ({"seed": -1}, "seed"),
        ({"seed": "7"}, "seed"),
    ],
)
def test_invalid_params_raise_actionable_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


def test_valid_params_are_frozen_and_stop_is_a_tuple() -> None:
    params = SamplingParams(max_tokens=4, temperature=0, stop=["a", "b"], seed=3)
    assert params.stop == ("a", "b")
    assert params.greedy
    with pytest.raises(AttributeError):
        params.max_tokens = 5  # type: ignore[misc]


def test_greedy_sampler_takes_argmax() -> None:
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    assert Sampler(SamplingParams(temperature=0), torch.device("cpu")).sample(logits) == 1


def test_seeded_sampler_repeats_and_top_p_keeps_the_nucleus() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    params = SamplingParams(temperature=1.0, top_p=0.7, seed=11)
    a, b = Sampler(params, torch.device("cpu")), Sampler(params, torch.device("cpu"))
    draws_a = [a.sample(logits) for _ in range(200)]
    assert draws_a == [b.sample(logits) for _ in range(200)]
    # 0.5 + 0.3 reaches 0.7: only tokens 0 and 1 may be drawn, and both are.
    assert set(draws_a) == {0, 1}


def test_low_temperature_concentrates_on_the_top_token() -> None:
    logits = torch.tensor([1.0, 0.5, 0.0])
    sampler = Sampler(SamplingParams(temperature=0.01, seed=0), torch.device("cpu"))
    assert {sampler.sample(logits) for _ in range(50)} == {0}


@pytest.mark.parametrize("kwargs, match", [
    ({"presence_penalty": 2.5}, "presence_penalty"),
    ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"logit_bias": {5: 101}}, "logit_bias"),
    ({"logit_bias": {-1: 1}}, "logit_bias"),
    ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
    ({"top_logprobs": 2}, "needs logprobs"),
])
def test_penalty_bias_logprob_settings_are_validated(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kwargs)


def test_adjust_logits_is_batched_and_leaves_plain_rows() -> None:
    from workers.text.sampling import adjust_logits

    cpu = torch.device("cpu")
    plain = Sampler(SamplingParams(temperature=0), cpu, 4)
    pen = Sampler(SamplingParams(temperature=0, frequency_penalty=1.0, presence_penalty=0.5, logit_bias={3: -2}), cpu, 4)
    pen.observe(1)
    pen.observe(1)
    logits = torch.zeros(2, 4)
    out = adjust_logits(logits, [plain, pen])
    assert out[0].tolist() == [0, 0, 0, 0]
    assert out[1].tolist() == [0, -2.5, 0, -2]
    assert adjust_logits(logits, [plain, plain]) is logits
