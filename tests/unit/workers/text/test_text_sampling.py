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
