from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler

from infra.models.storage import RANDOM_WEIGHTS
from infra.models.tiny import sd_scheduler
from workers.image.engine import ImageEngine, ImageJob, make_scheduler
from schemas.enums import ErrorCode
from workers.diffusion.steps import GenerationCancelled
from workers.errors import JobError
from workers.image.png import encode_png


def job(job_id: str, seed: int, **kw: object) -> ImageJob:
    fields: dict[str, object] = dict(width=32, height=32, steps=2, guidance=5.0, scheduler="ddim")
    fields.update(kw)
    return ImageJob(job_id=job_id, prompt="a red cat on a boat", seed=seed, **fields)  # type: ignore[arg-type]


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def test_model_info_labels_random_weights(image_engine: ImageEngine) -> None:
    info = image_engine.model_info
    assert info.weights == RANDOM_WEIGHTS
    assert (info.device, info.dtype, info.attention, info.vae_scale_factor) == ("cpu", "float32", "sdpa", 8)


def test_progress_callback_once_per_step_and_png_size(image_engine: ImageEngine) -> None:
    calls: list[tuple[int, int]] = []
    [[img]] = image_engine.generate([job("j1", 1, width=48, height=32, steps=3)], on_step=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    decoded = Image.open(io.BytesIO(encode_png(img)))
    assert decoded.format == "PNG"
    assert decoded.size == (48, 32)


def test_batched_equals_unbatched_for_same_seeds(image_engine: ImageEngine) -> None:
    a, b = job("a", 11, n=2), job("b", 42)
    batched = image_engine.generate([a, b])
    alone = [image_engine.generate([a])[0], image_engine.generate([b])[0]]
    assert [len(x) for x in batched] == [2, 1]
    for got, want in zip(sum(batched, []), sum(alone, [])):
        assert np.abs(pixels(got) - pixels(want)).max() <= 1


def test_same_seed_repeats_and_different_seeds_differ(image_engine: ImageEngine) -> None:
    [[x]], [[y]], [[z]] = (image_engine.generate([job("s", s)]) for s in (5, 5, 6))
    assert np.array_equal(pixels(x), pixels(y))
    assert np.abs(pixels(x) - pixels(z)).max() > 10


@pytest.mark.parametrize("scheduler", ["ddim", "dpm-solver"])
def test_both_schedulers_run(image_engine: ImageEngine, scheduler: str) -> None:
    steps: list[int] = []
    [[img]] = image_engine.generate([job("s", 3, scheduler=scheduler)], on_step=lambda d, t: steps.append(d))
    assert steps == [1, 2]
    assert img.size == (32, 32)


def test_schedulers_give_different_images(image_engine: ImageEngine) -> None:
    [[ddim]] = image_engine.generate([job("s", 3, steps=3, scheduler="ddim")])
    [[dpm]] = image_engine.generate([job("s", 3, steps=3, scheduler="dpm-solver")])
    assert np.abs(pixels(ddim) - pixels(dpm)).max() > 0


def test_cancel_stops_within_one_step(image_engine: ImageEngine) -> None:
    seen: list[int] = []
    stop = {"now": False}

    def on_step(done: int, total: int) -> None:
        seen.append(done)
        stop["now"] = done == 2

    with pytest.raises(GenerationCancelled) as err:
        image_engine.generate([job("c", 1, steps=10)], on_step=on_step, should_stop=lambda: stop["now"])
    assert err.value.steps_done == 2
    assert seen == [1, 2]


def test_cancel_before_start_runs_no_step(image_engine: ImageEngine) -> None:
    seen: list[int] = []
    with pytest.raises(GenerationCancelled) as err:
        image_engine.generate([job("c", 1)], on_step=lambda d, t: seen.append(d), should_stop=lambda: True)
    assert (err.value.steps_done, seen) == (0, [])


def test_mixed_batch_keys_are_rejected(image_engine: ImageEngine) -> None:
    with pytest.raises(ValueError, match="batch key"):
        image_engine.generate([job("a", 1), job("b", 1, steps=3)])


def test_batch_key_groups_by_shape_steps_scheduler_guidance() -> None:
    assert job("a", 1).batch_key == job("b", 2, n=3, negative_prompt="blur").batch_key
    for change in ({"width": 64}, {"height": 64}, {"steps": 3}, {"scheduler": "dpm-solver"}, {"guidance": 1.0}):
        assert job("a", 1).batch_key != job("b", 1, **change).batch_key


def test_make_scheduler_keeps_the_noise_schedule() -> None:
    base = sd_scheduler()
    ddim, dpm = make_scheduler("ddim", base), make_scheduler("dpm-solver", base)
    assert isinstance(ddim, DDIMScheduler) and isinstance(dpm, DPMSolverMultistepScheduler)
    assert dpm.config.beta_schedule == "scaled_linear" and dpm.config.beta_end == base.config.beta_end


def test_make_scheduler_on_flow_matching_models() -> None:
    flow = FlowMatchEulerDiscreteScheduler(shift=3.0)  # SD 3.5's scheduler
    dpm = make_scheduler("dpm-solver", flow)
    assert (dpm.config.use_flow_sigmas, dpm.config.prediction_type, dpm.config.flow_shift) == (
        True, "flow_prediction", 3.0)
    with pytest.raises(JobError) as err:
        make_scheduler("ddim", flow)
    assert err.value.code is ErrorCode.UNKNOWN_SCHEDULER
