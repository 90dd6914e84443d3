"""What the digit image and video model tests share: the text conditioner, a small training set, a
short training configuration, and how to tell that data-parallel training took one process's steps."""

from __future__ import annotations

import pytest
import torch

from infra.models.digits.data import Digits, load_digits
from infra.models.digits.model import TextConditioner
from infra.models.digits.train import TrainConfig


@pytest.fixture(scope="module")
def text() -> TextConditioner:
    return TextConditioner.default()


def few_digits_set() -> Digits:
    full = load_digits("train")
    return Digits(full.images[:200], full.labels[:200], full.sha256)


@pytest.fixture(scope="module")
def few_digits() -> Digits:
    return few_digits_set()


def small(steps: int, **kw: object) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=16, warmup=5, checkpoint_every=4, threads=1, **kw)  # type: ignore[arg-type]


def assert_same_steps(start: dict[str, torch.Tensor], one: dict[str, torch.Tensor],
                      two: dict[str, torch.Tensor]) -> None:
    """The weights after one process's run (`one`) and after two data-parallel processes' run
    (`two`), both from `start`, took the same steps.

    They cannot be compared element by element with a fixed tolerance (atol=1e-5 failed now and
    then): AdamW moves each weight by lr * m / sqrt(v), a ratio of the gradient to its own size, so a
    weight whose gradient nearly cancels (a small sum of large terms) turns a rounding difference of
    order 1e-7 (the two runs sum the batch in a different order) into a difference of order lr in
    its step; measured, one weight of 1.2M moved 1.07e-5 apart. What float order cannot change is
    the step as a whole: the two updates agree to about 1e-5 of their size (measured 1.2e-5), while
    a missing or wrong all-reduce (each process stepping on its own half batch) puts them apart by
    order 1."""
    names = list(start)
    moved = torch.cat([(one[n] - start[n]).flatten() for n in names])
    apart = torch.cat([(one[n] - two[n]).flatten() for n in names])
    assert moved.norm() > 0.05
    assert apart.norm() < 1e-3 * moved.norm()
