"""The evaluation metrics on cases whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import linalg

from infra.evaluation.metrics import bleu, frechet_distance, perplexity, rouge, word_error_rate


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # a shift of the mean by 3 in every one of 8 dimensions adds |3|^2 * 8 = 72
    assert frechet_distance(a, a + 3.0) == pytest.approx(72.0, rel=1e-6)


def test_fid_of_gaussians_matches_the_closed_form() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20000, 3))
    b = rng.normal(size=(20000, 3)) * 2.0  # covariance 4I: trace(I + 4I - 2 * 2I) = 3
    assert frechet_distance(a, b) == pytest.approx(3.0, abs=0.1)


def test_fid_refuses_too_few_samples() -> None:
    with pytest.raises(ValueError, match="features"):
        frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))


@pytest.mark.parametrize(("reference", "hypothesis", "wer"), [
    ("the cat sat", "the cat sat", 0.0),
    ("The cat sat.", "the cat, sat", 0.0),  # case and punctuation do not count
    ("the cat sat", "the bat sat", 1 / 3),  # one substitution
    ("the cat sat", "the sat", 1 / 3),  # one deletion
    ("the cat sat", "the big cat sat down", 2 / 3),  # two insertions
    ("one two", "", 1.0),
    ("", "", 0.0),
])
def test_word_error_rate(reference: str, hypothesis: str, wer: float) -> None:
    assert word_error_rate(reference, hypothesis) == pytest.approx(wer)


def test_perplexity_is_the_exponential_of_the_mean_nll() -> None:
    assert perplexity(0.0, 5) == 1.0
    assert perplexity(10 * math.log(7), 10) == pytest.approx(7.0)
    with pytest.raises(ValueError):
        perplexity(1.0, 0)


def test_bleu_and_rouge_are_maximal_for_identical_texts_and_zero_for_disjoint_ones() -> None:
    refs = ["the capital of france is paris", "there are seven days in a week"]
    assert bleu(refs, refs) == pytest.approx(100.0)
    assert rouge(refs, refs) == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    other = ["blue green red yellow orange", "one two three four five six"]
    assert bleu(other, refs) == pytest.approx(0.0)
    assert rouge(other, refs)["rouge1"] == 0.0
    partial = ["the capital of france is lyon", "there are seven days in a week"]
    assert 0 < bleu(partial, refs) < 100 and 0 < rouge(partial, refs)["rougeL"] < 1


def test_bleu_wants_one_hypothesis_per_reference() -> None:
    with pytest.raises(ValueError, match="one hypothesis per reference"):
        bleu(["a"], ["a", "b"])


def test_fid_with_fewer_samples_than_dimensions_matches_the_matrix_square_root() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 40))
    b = rng.normal(size=(25, 40)) * 1.5 + 0.3
    fast = frechet_distance(a, b)  # 30 samples < 40 dimensions: the nuclear-norm path
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    exact = (a.mean(0) - b.mean(0)) @ (a.mean(0) - b.mean(0)) + np.trace(s1) + np.trace(s2) \
        - 2 * np.real(np.trace(linalg.sqrtm(s1 @ s2)))
    assert fast == pytest.approx(exact, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
