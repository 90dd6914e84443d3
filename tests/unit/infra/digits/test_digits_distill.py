"""Progressive distillation of the digit image model: the grid arithmetic, a round that lowers its
loss, the exported student served on its own grid, and the committed student against its record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from infra.models.digits import IMAGE_MODEL_DIR
from infra.models.digits.classifier import DigitClassifier
from infra.models.digits.data import Digits
from infra.models.digits.distill import (DISTILLED_FILE, DistillConfig, Distiller, ddim_step, export_distilled,
                                         grid, sample_on_grid)
from infra.models.digits.evaluate import evaluate_image
from infra.models.digits.model import TextConditioner, digit_scheduler
from infra.models.digits.train import load_unet
from workers.diffusion.pipeline import load_pipeline
from workers.image.engine import ImageEngine, ImageJob

STUDENT_DIR = IMAGE_MODEL_DIR.parent / "digits-image-4step"
#: as for the teacher's card (test_digits_image.py): three standard errors on 180 images, plus the
#: record's own sampling error
CARD_TOLERANCE = 0.06


def test_each_grid_halves_the_one_before_and_ends_at_zero() -> None:
    assert grid(32)[:3] == [961, 930, 899] and grid(32)[-1] == 0
    for steps in (16, 8, 4):
        assert grid(steps) == grid(2 * steps)[1::2]  # every other point of the teacher's grid
        assert grid(steps)[-1] == 0 and len(grid(steps)) == steps
    with pytest.raises(ValueError, match="4, 8, 16 or 32"):
        grid(5)
    with pytest.raises(ValueError, match="4, 8, 16 or 32"):
        grid(2)  # would start from pure noise at t = 496, far from it


def test_ddim_step_matches_the_served_scheduler() -> None:
    """The distiller's DDIM step (per-sample t) is the step of the DDIMScheduler the pipeline serves
    with: the same clipping, the noise prediction kept."""
    scheduler = digit_scheduler()
    scheduler.set_timesteps(4)  # 750, 500, 250, 0
    g = torch.Generator().manual_seed(0)
    z, eps = torch.randn(3, 1, 16, 16, generator=g), torch.randn(3, 1, 16, 16, generator=g)
    ac = scheduler.alphas_cumprod
    for t, s in ((750, 500), (250, 0), (0, -1)):
        want = scheduler.step(eps, t, z).prev_sample
        got = ddim_step(z, eps, torch.full((3,), t), torch.full((3,), s), ac)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_round_lowers_its_loss_and_the_student_serves_on_its_grid(tmp_path: Path, text: TextConditioner,
                                                                   few_digits: Digits) -> None:
    teacher = load_unet(IMAGE_MODEL_DIR)
    config = DistillConfig(target_steps=16, steps_per_round=30, batch_size=16, threads=1, lr=3e-4)
    distiller = Distiller(teacher, config, text, few_digits)
    student = distiller.run()
    assert [r["steps"] for r in distiller.rounds] == [32, 16]  # guidance distilled, then one halving
    for record in distiller.rounds:
        losses = record["losses"]
        assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10
    assert not torch.equal(next(student.parameters()), next(teacher.parameters()))  # the teacher is untouched

    folder = export_distilled(student, IMAGE_MODEL_DIR, tmp_path / "student", distiller)
    record = json.loads((folder / DISTILLED_FILE).read_text())
    assert record["steps"] == 16 and record["timesteps"] == grid(16) and record["guidance_baked"] == 2.0
    pipe, info = load_pipeline(folder, "cpu")
    assert info.defaults["steps"] == 16
    calls: list[int] = []
    pipe.unet.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape[0]))
    engine = ImageEngine(pipe, info)
    steps: list[tuple[int, int]] = []
    [[image]] = engine.generate([ImageJob("a", "a handwritten seven", seed=1, width=16, height=16, steps=16,
                                          guidance=2.0, scheduler="ddim")], on_step=lambda d, t: steps.append((d, t)))
    assert image.size == (16, 16)
    assert calls == [1] * 16  # one conditional call a step: guidance is built in
    assert steps[-1] == (16, 16)
    calls.clear()
    engine.generate([ImageJob("b", "7", seed=1, width=16, height=16, steps=3, guidance=2.0, scheduler="ddim")])
    assert calls == [2] * 3  # another step count samples like any model, with guidance


def test_sampling_on_the_grid_is_seeded(text: TextConditioner) -> None:
    unet = load_unet(IMAGE_MODEL_DIR)
    tokens = text.encode(["a handwritten three"])

    def draw() -> torch.Tensor:
        noise = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(5))
        return sample_on_grid(unet, tokens, noise, grid(4))

    assert torch.equal(draw(), draw())


def test_the_committed_student_reaches_its_record(text: TextConditioner) -> None:
    record = json.loads((STUDENT_DIR / DISTILLED_FILE).read_text())
    steps = record["steps"]
    card = next(v for k, v in record["metrics"].items() if k.startswith(record["exported"]))
    pipe, _ = load_pipeline(STUDENT_DIR, "cpu")
    pipe.text = text
    result = evaluate_image(pipe, DigitClassifier.train(), per_caption=1, seed=777, steps=steps)
    assert result.accuracy >= card["accuracy"] - CARD_TOLERANCE
