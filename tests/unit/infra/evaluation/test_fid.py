"""FID in the two feature spaces, on real digits and noise: a set against itself is about 0, against
noise far larger."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from infra.evaluation.fid import InceptionFeatures, InceptionMissing, cached_features, judge_features
from infra.evaluation.metrics import frechet_distance
from infra.models.digits.classifier import DigitClassifier
from infra.models.digits.data import load_digits


@pytest.fixture(scope="module")
def digits01() -> torch.Tensor:
    return (load_digits("test").images + 1) / 2


def test_inception_fid_of_digits_with_themselves_is_small_and_with_noise_large(digits01: torch.Tensor) -> None:
    try:
        net = InceptionFeatures(batch_size=8)
    except InceptionMissing as exc:
        pytest.skip(str(exc))
    real = net(digits01[:8])
    assert real.shape == (8, 2048) and np.isfinite(real).all()
    noise = net(torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    same = frechet_distance(real, real)
    apart = frechet_distance(real, noise)
    assert same < 1e-3 * apart
    assert apart > 10.0


def test_judge_fid_of_digits_with_themselves_is_zero_and_with_noise_large(digits01: torch.Tensor) -> None:
    judge = DigitClassifier.train()
    real = judge_features(judge, digits01)
    assert real.shape == (len(digits01), 10)
    noise = judge_features(judge, torch.rand(200, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    train = judge_features(judge, (load_digits("train").images[:360] + 1) / 2)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    # real training digits are close to the real test digits; noise is not
    assert frechet_distance(train, real) < 0.2 * frechet_distance(noise, real)


def test_cached_features_are_computed_once(tmp_path: Path) -> None:
    calls = []

    def extract(images: torch.Tensor) -> np.ndarray:
        calls.append(len(images))
        return images.reshape(len(images), -1).double().numpy()

    images = torch.rand(4, 1, 2, 2)
    first = cached_features(extract, images, "k", tmp_path)
    again = cached_features(extract, images, "k", tmp_path)
    assert calls == [4] and np.array_equal(first, again)
