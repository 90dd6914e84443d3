"""The digit image model: training end to end, resume, serving, prompt matching, and the committed
weights against their card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from infra.models.digits import IMAGE_MODEL_DIR
from infra.models.digits.classifier import DigitClassifier
from infra.models.digits.data import Digits
from infra.models.digits.evaluate import evaluate_image
from infra.models.digits.model import TextConditioner
from infra.models.digits.train import Trainer
from infra.models.storage import PRETRAINED_WEIGHTS
from workers.diffusion.handler import wire_model_info
from workers.diffusion.pipeline import load_pipeline
from workers.image.engine import ImageEngine, ImageJob

from .conftest import assert_same_steps, few_digits_set, small

#: how far below its card the committed model's accuracy may measure on a fresh sample of 180
#: images (three standard errors at the card's accuracy, plus the card's own sampling error)
CARD_TOLERANCE = 0.06



def test_training_lowers_the_loss_and_the_checkpoint_serves(tmp_path: Path, text: TextConditioner,
                                                           few_digits: Digits) -> None:
    trainer = Trainer(small(40), tmp_path / "run", text, few_digits)
    trainer.run()
    first, last = trainer.losses[:8], trainer.losses[-8:]
    assert sum(last) / 8 < 0.7 * sum(first) / 8
    folder = trainer.export(tmp_path / "model")

    pipe, info = load_pipeline(folder, "cpu")
    assert (info.pipeline_class, info.weights) == ("DigitsPipeline", PRETRAINED_WEIGHTS)
    assert wire_model_info(info).random_weights is False
    assert info.defaults == {"steps": 25, "guidance": 2.0, "scheduler": "ddim"}
    engine = ImageEngine(pipe, info)
    steps: list[tuple[int, int]] = []
    [[image], [other]] = engine.generate(
        [ImageJob("a", "a handwritten seven", seed=1, width=16, height=16, steps=3, guidance=2.0, scheduler="ddim"),
         ImageJob("b", "asdkjh qwe", seed=2, width=16, height=16, steps=3, guidance=2.0, scheduler="ddim")],
        on_step=lambda d, t: steps.append((d, t)))
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert image.size == other.size == (16, 16)
    [[big]] = engine.generate([ImageJob("c", "7", seed=1, width=64, height=48, steps=2, guidance=2.0,
                                        scheduler="dpm-solver")])
    assert big.size == (64, 48)  # drawn at 16x16, resized to the request


def test_interrupted_and_resumed_training_ends_where_an_uninterrupted_run_does(
        tmp_path: Path, text: TextConditioner, few_digits: Digits) -> None:
    straight = Trainer(small(10), tmp_path / "a", text, few_digits)
    straight.run()
    first = Trainer(small(10), tmp_path / "b", text, few_digits)
    first.run(stop_at=6)  # stopped at step 6, its last checkpoint
    resumed = Trainer(small(10), tmp_path / "b", text, few_digits)
    assert resumed.resume() and resumed.step == 6
    resumed.run()
    assert resumed.losses == straight.losses
    for name, tensor in straight.ema.state_dict().items():
        assert torch.equal(tensor, resumed.ema.state_dict()[name]), name


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path: Path, text: TextConditioner,
                                                       few_digits: Digits) -> None:
    Trainer(small(4), tmp_path, text, few_digits).run()
    with pytest.raises(ValueError, match="same settings"):
        Trainer(small(4, seed=7), tmp_path, text, few_digits).resume()


@pytest.mark.parametrize(("prompt", "known"), [
    ("a hand-drawn seven", True),  # a held-out caption form
    ("show me the number 3", True),
    ("a cat on a sofa", False),  # no digit
    ("asdkjh qwe", False),  # nonsense
    ("a three and a seven", False),  # two digits
    ("7 and 8", False),
])
def test_prompt_match_says_whether_the_model_knows_the_prompt(text: TextConditioner, prompt: str,
                                                              known: bool) -> None:
    assert text.match(prompt).known is known


def test_the_committed_model_reaches_its_card(text: TextConditioner) -> None:
    card = json.loads((IMAGE_MODEL_DIR / "training.json").read_text())["eval"]
    pipe, info = load_pipeline(IMAGE_MODEL_DIR, "cpu")
    assert info.weights == PRETRAINED_WEIGHTS
    pipe.text = text
    # a different seed from the card's: the same model, fresh noise
    result = evaluate_image(pipe, DigitClassifier.train(), per_caption=1, seed=777)
    assert result.accuracy >= card["accuracy"] - CARD_TOLERANCE
    assert result.heldout_forms >= card["heldout_forms"] - 2 * CARD_TOLERANCE  # 40 images in all


def _train_share(rank: int, world: int, out_dir: Path) -> None:
    data = few_digits_set()
    Trainer(small(6), out_dir, TextConditioner.default(), data, rank=rank, world=world).run()


def test_two_data_parallel_processes_take_the_steps_one_process_takes(tmp_path: Path, text: TextConditioner,
                                                                      few_digits: Digits) -> None:
    from infra.models.digits.distributed import run_data_parallel

    start = Trainer(small(6), tmp_path / "start", text, few_digits).unet.state_dict()
    one = Trainer(small(6), tmp_path / "one", text, few_digits)
    one.run()
    run_data_parallel(2, _train_share, tmp_path / "two")
    two = Trainer(small(6), tmp_path / "two", text, few_digits)
    assert two.resume() and two.step == 6
    # the same batches, the same mean loss: only the float summation order differs (the mean of two
    # means of 8, convolutions over 8 samples instead of 16), about 1e-7 of the loss
    assert two.losses == pytest.approx(one.losses, rel=1e-5)
    assert_same_steps(start, one.unet.state_dict(), two.unet.state_dict())
