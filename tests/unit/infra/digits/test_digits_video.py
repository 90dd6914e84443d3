"""The digit video model: its moving-digit clips, training end to end with the image model's trainer
(resume, data parallel), serving through the video engine, prompt matching, and the committed weights
against their card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from infra.models.digits import VIDEO_MODEL_DIR
from infra.models.digits.data import SIDE, Digits, load_digits
from infra.models.digits.model import TextConditioner
from infra.models.digits.train import Trainer
from infra.models.digits.video import (FRAMES, MOTION_NAMES, ClipCaptionMatch, VideoKind, digits_named,
                                       estimate_motion, evaluate_video, make_clips, train_pairs)
from infra.models.storage import PRETRAINED_WEIGHTS
from workers.diffusion.handler import wire_model_info
from workers.diffusion.pipeline import load_pipeline, prompt_match
from workers.video.engine import VideoEngine, VideoJob

from .conftest import assert_same_steps, few_digits_set, small

#: how far below its card the committed model may measure on fresh noise (120 clips, 960 frames:
#: about three standard errors of a share near the card's, clips being the independent unit)
CARD_TOLERANCE = 0.08



def _centre(clips01: torch.Tensor) -> torch.Tensor:
    """(N, FRAMES, 2): the brightness-weighted centre (x, y) of every frame."""
    ys, xs = torch.meshgrid(torch.arange(SIDE, dtype=torch.float32), torch.arange(SIDE, dtype=torch.float32),
                            indexing="ij")
    mass = clips01.sum(dim=(2, 3))
    return torch.stack([(clips01 * xs).sum(dim=(2, 3)) / mass, (clips01 * ys).sum(dim=(2, 3)) / mass], -1)


def test_the_clips_move_as_their_caption_says_and_the_motion_estimator_reads_them() -> None:
    digits = load_digits("test")
    motions = torch.arange(len(digits.labels)) % len(MOTION_NAMES)
    clips = (make_clips(digits.images, motions) + 1) / 2
    assert clips.shape == (len(digits.labels), FRAMES, SIDE, SIDE)
    drift = (_centre(clips)[:, -1] - _centre(clips)[:, 0]).mean(0)
    moved = {name: (_centre(clips[motions == m])[:, -1] - _centre(clips[motions == m])[:, 0]).mean(0)
             for m, name in enumerate(MOTION_NAMES)}
    # 3.5 pixels from first to last frame, less where the digit leaves the frame (it is tall)
    assert moved["left"][0] < -3 and moved["right"][0] > 3 and moved["up"][1] < -1.5 and moved["down"][1] > 1.5
    assert drift.abs().max() < 0.5  # the six motions cancel out
    # the middle of a clip is the still digit, rotations keep the digit in place
    still = (digits.images + 1) / 2
    assert ((clips[:, 3:5].mean(1) - still[:, 0]).abs().mean()) < 0.06
    assert (estimate_motion(clips) == motions.numpy()).mean() > 0.98


def test_training_lowers_the_loss_and_the_checkpoint_serves_clips(tmp_path: Path, text: TextConditioner,
                                                                 few_digits: Digits) -> None:
    trainer = Trainer(small(30), tmp_path / "run", text, few_digits, kind=VideoKind)
    trainer.run()
    first, last = trainer.losses[:6], trainer.losses[-6:]
    assert sum(last) / 6 < 0.7 * sum(first) / 6
    folder = trainer.export(tmp_path / "model")

    pipe, info = load_pipeline(folder, "cpu")
    assert (info.pipeline_class, info.weights) == ("DigitsVideoPipeline", PRETRAINED_WEIGHTS)
    assert wire_model_info(info).random_weights is False
    assert info.defaults["frames"] == FRAMES and info.defaults["guidance"] == 2.0
    engine = VideoEngine(pipe, info)
    steps: list[tuple[int, int]] = []
    frames = engine.generate(VideoJob("a", "a three drifting to the left", seed=1, frames=FRAMES, width=16,
                                      height=16, steps=3, guidance=2.0), on_step=lambda d, t: steps.append((d, t)))
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert len(frames) == FRAMES and frames[0].shape == (16, 16, 3) and frames[0].dtype == np.uint8
    longer = engine.generate(VideoJob("b", "7 rotating clockwise", seed=1, frames=12, width=48, height=32, steps=2,
                                      guidance=2.0))
    assert len(longer) == 12 and longer[0].shape == (32, 48, 3)  # 8 frames resampled in time, resized


def test_interrupted_and_resumed_video_training_ends_where_an_uninterrupted_run_does(
        tmp_path: Path, text: TextConditioner, few_digits: Digits) -> None:
    straight = Trainer(small(8), tmp_path / "a", text, few_digits, kind=VideoKind)
    straight.run()
    first = Trainer(small(8), tmp_path / "b", text, few_digits, kind=VideoKind)
    first.run(stop_at=4)
    resumed = Trainer(small(8), tmp_path / "b", text, few_digits, kind=VideoKind)
    assert resumed.resume() and resumed.step == 4
    resumed.run()
    assert resumed.losses == straight.losses
    for name, tensor in straight.ema.state_dict().items():
        assert torch.equal(tensor, resumed.ema.state_dict()[name]), name


def _train_share(rank: int, world: int, out_dir: Path) -> None:
    data = few_digits_set()
    Trainer(small(4), out_dir, TextConditioner.default(), data, rank=rank, world=world, kind=VideoKind).run()


def test_two_data_parallel_processes_take_the_video_steps_one_process_takes(tmp_path: Path, text: TextConditioner,
                                                                            few_digits: Digits) -> None:
    from infra.models.digits.distributed import run_data_parallel

    start = Trainer(small(4), tmp_path / "start", text, few_digits, kind=VideoKind).unet.state_dict()
    one = Trainer(small(4), tmp_path / "one", text, few_digits, kind=VideoKind)
    one.run()
    run_data_parallel(2, _train_share, tmp_path / "two")
    two = Trainer(small(4), tmp_path / "two", text, few_digits, kind=VideoKind)
    assert two.resume() and two.step == 4
    assert two.losses == pytest.approx(one.losses, rel=1e-4)
    assert_same_steps(start, one.unet.state_dict(), two.unet.state_dict())


@pytest.mark.parametrize(("prompt", "known"), [
    ("a clip of the number 3 moving left", True),  # a held-out caption form
    ("handwritten digit seven, rotating to the left", True),
    ("a cat on a sofa", False),  # no digit
    ("asdkjh qwe", False),  # nonsense
    ("a three and a seven drifting up", False),  # two digits
    ("7 and 8 moving left", False),
    ("a dog running left", False),
])
def test_prompt_match_says_whether_the_video_model_knows_the_prompt(text: TextConditioner, prompt: str,
                                                                    known: bool) -> None:
    found = text.with_captions(train_pairs()).match(prompt)
    assert ClipCaptionMatch(**vars(found), named=len(digits_named(prompt))).known is known


def test_digits_named_counts_words_and_numerals() -> None:
    assert digits_named("a three and a 7") == {3, 7}
    assert digits_named("the digit 3, a three") == {3}
    assert digits_named("someone drifting left") == set()  # "one" only as a word


def test_the_committed_video_model_reaches_its_card(text: TextConditioner) -> None:
    card = json.loads((VIDEO_MODEL_DIR / "training.json").read_text())["eval_quick"]
    pipe, info = load_pipeline(VIDEO_MODEL_DIR, "cpu")
    assert info.weights == PRETRAINED_WEIGHTS
    assert prompt_match(pipe, "the digit 4 sliding left").known is True  # type: ignore[union-attr]
    result = evaluate_video(VIDEO_MODEL_DIR, quick=True, seed=777, text=text)  # the card's model, fresh noise
    for metric in ("frame_accuracy", "temporal_consistency", "motion_accuracy"):
        assert result[metric] >= card[metric] - CARD_TOLERANCE, (metric, result[metric], card[metric])


def test_the_clip_is_drawn_from_the_image_models_keyframe_and_a_folder_must_name_it(tmp_path: Path,
                                                                                   text: TextConditioner) -> None:
    """Stage one draws the keyframe with the image model named in keyframes.json; stage two follows it:
    given a real digit as keyframe, the clip's middle frames are that digit. A keyframe-conditioned
    folder without keyframes.json, or naming a model that is not there, is refused with what to do."""
    import shutil

    from infra.models.digits.classifier import DigitClassifier
    from infra.models.digits.video import KEYFRAMES_FILE, DigitsVideoPipeline

    pipe = DigitsVideoPipeline.from_folder(VIDEO_MODEL_DIR, text)
    assert pipe.keyframes is not None and pipe.keyframes.distilled is not None  # the 4-step image model
    real = load_digits("test")
    sevens = real.images[real.labels == 7][:4]
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    clips = pipe.sample(["a five drifting up"] * 4, generator=gens, context=sevens)  # the keyframe wins
    judge = DigitClassifier.train()
    assert (judge.predict(clips[:, 3:5].reshape(-1, 1, SIDE, SIDE)) == 7).mean() >= 0.75

    copy = tmp_path / "video"
    shutil.copytree(VIDEO_MODEL_DIR, copy)
    (copy / KEYFRAMES_FILE).write_text(json.dumps({"model": "no-such-model", "steps": 4, "guidance": 2.0}))
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        DigitsVideoPipeline.from_folder(copy, text)
    (copy / KEYFRAMES_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=KEYFRAMES_FILE):
        DigitsVideoPipeline.from_folder(copy, text)
