"""The text-to-video digit model: clips of a digit drifting or rotating, trained like the image model.

Data: every training digit of `data.load_digits` moved by one of six motions (drifting left,
right, up or down by half a pixel a frame, or rotating clockwise or anticlockwise by 5 degrees a
frame) over `FRAMES` frames of 16x16, centred so the middle of the clip is the still digit.
Captions combine a digit, a motion phrase and a sentence form; some forms are held out.

Model: factorised like Emu Video or Stable Video Diffusion, in two stages. The image model draws
the clip's keyframe (the still digit) from the caption; the video model draws the clip from the
caption and that keyframe. It is the image model's `UNet2DConditionModel` with the clip's frames as
its channels (8 out; in, the 8 noisy frames and the keyframe concatenated), so every convolution
sees all frames at once and learns the motion, and the text (one sentence embedding) has only the
motion left to say. Trained end to end on the caption alone, the same network followed the motion
but drew the digit asked for no more often than chance (0.097 of frames): a caption's sentence
embedding is dominated by its motion phrase, and the digit's share of it ("a three" against "a
five") was too small a signal to learn on this machine. The keyframe carries the digit instead.

It is trained by the same `Trainer` (DDPM, caption dropout, EMA, checkpoints, gloo data
parallelism), on real digits as keyframes with a little noise added (so an image model's drawing is
in the training distribution), and sampled by the same `DigitsPipeline.sample` (DDIM,
classifier-free guidance over the caption; both halves see the keyframe). The keyframe model is
named in the folder's `keyframes.json`: by default the guidance-distilled image model on its 4-step
grid (models/digits-image-4step), so the first stage costs a small share of the second. A
`UNet3DConditionModel` of the same width took about 10x longer a step on this machine's CPU, too
slow to train here in minutes.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.utils import BaseOutput
from PIL import Image

from . import MODELS_DIR, VIDEO_BUILDER, VIDEO_FRAMES
from .data import SIDE, WORDS, Digits
from .model import KNOWN_MIN_COSINE, TEXT_DIM, CaptionMatch, TextConditioner, digit_unet
from .pipeline import DigitsPipeline

#: frames of a clip (the model's channels)
FRAMES = VIDEO_FRAMES
#: the file of a video model's folder that names the image model drawing its keyframes
KEYFRAMES_FILE = "keyframes.json"
#: what a newly trained video model draws its keyframes with: a model folder (absolute, beside the
#: video model's folder, or in the repository's models/), its steps and guidance
KEYFRAME_MODEL: dict[str, Any] = {"model": "digits-image-4step", "steps": 4, "guidance": 2.0}
#: the largest standard deviation of the noise added to a training keyframe (pixels in [-1, 1]);
#: each keyframe draws its own level in [0, this)
KEYFRAME_NOISE = 0.1
#: motion name -> (x pixels, y pixels, degrees clockwise) per frame
MOTIONS: dict[str, tuple[float, float, float]] = {
    "left": (-0.5, 0.0, 0.0),
    "right": (0.5, 0.0, 0.0),
    "up": (0.0, -0.5, 0.0),
    "down": (0.0, 0.5, 0.0),
    "clockwise": (0.0, 0.0, 5.0),
    "anticlockwise": (0.0, 0.0, -5.0),
}
MOTION_NAMES = tuple(MOTIONS)
#: ways of saying each motion (the last is kept for the held-out caption forms)
PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("drifting to the left", "moving left", "sliding left", "going to the left"),
    "right": ("drifting to the right", "moving right", "sliding right", "going to the right"),
    "up": ("drifting up", "moving up", "sliding upwards", "rising"),
    "down": ("drifting down", "moving down", "sliding downwards", "falling"),
    "clockwise": ("rotating clockwise", "turning clockwise", "spinning clockwise", "rotating to the right"),
    "anticlockwise": ("rotating anticlockwise", "turning counterclockwise", "spinning anticlockwise",
                      "rotating to the left"),
}
#: sentence forms seen in training: {w} word, {d} numeral, {m} motion phrase
VIDEO_TRAIN_FORMS = (
    "a {w} {m}",
    "the digit {d} {m}",
    "{d} {m}",
    "a handwritten {w} {m}",
    "number {w} {m}",
    "a video of a {w} {m}",
)
#: forms never seen in training, for the evaluation of unseen wording
VIDEO_HELDOUT_FORMS = (
    "a clip of the number {d} {m}",
    "handwritten digit {w}, {m}",
)


def video_captions(forms: tuple[str, ...], phrases: slice = slice(None)) -> list[tuple[int, int, str]]:
    """(digit, motion index, caption) for every digit, motion, phrase and form."""
    return [(d, m, f.format(w=WORDS[d], d=d, m=p)) for d in range(10) for m, name in enumerate(MOTION_NAMES)
            for p in PHRASES[name][phrases] for f in forms]


def train_pairs() -> list[tuple[int, str]]:
    """(digit, caption) of every training caption, for `TextConditioner.match`."""
    return [(d, c) for d, _, c in video_captions(VIDEO_TRAIN_FORMS)]


_DIGIT_WORDS = re.compile(r"\b(" + "|".join(WORDS) + r"|[0-9])\b")


def digits_named(prompt: str) -> set[int]:
    """The digits a prompt names, as words or numerals ("a three and a 7" -> {3, 7})."""
    return {int(w) if w.isdigit() else WORDS.index(w) for w in _DIGIT_WORDS.findall(prompt.lower())}


@dataclass(frozen=True)
class ClipCaptionMatch(CaptionMatch):
    """`CaptionMatch` of a video prompt. The motion phrase weighs so much in a caption's embedding that
    the image model's digit margin cannot tell one digit from two ("7 and 8 moving left" sits 0.0006
    closer to "8 moving left" than to "7 moving left"), so the digits are counted in the words instead."""

    named: int = 1  #: how many different digits the prompt names

    @property
    def known(self) -> bool:
        return self.confidence >= KNOWN_MIN_COSINE and self.named == 1


def make_clips(images: torch.Tensor, motions: torch.Tensor) -> torch.Tensor:
    """(N, 1, 16, 16) digits in [-1, 1] and (N,) motion indices -> (N, FRAMES, 16, 16) clips in [-1, 1]."""
    n = len(images)
    per = torch.tensor([MOTIONS[name] for name in MOTION_NAMES], dtype=torch.float32)[motions]  # (N, 3)
    k = torch.arange(FRAMES, dtype=torch.float32) - (FRAMES - 1) / 2  # frame offsets from the middle
    dx, dy, deg = (per[:, None, i] * k for i in range(3))  # (N, FRAMES) each
    rad = torch.deg2rad(deg)
    cos, sin = torch.cos(rad), torch.sin(rad)
    # affine_grid maps output to input coordinates: the inverse of "rotate then shift" (in [-1, 1] units)
    tx, ty = -dx * 2 / SIDE, -dy * 2 / SIDE
    theta = torch.stack([torch.stack([cos, sin, cos * tx + sin * ty], -1),
                         torch.stack([-sin, cos, -sin * tx + cos * ty], -1)], -2).reshape(n * FRAMES, 2, 3)
    src = ((images + 1) / 2).repeat_interleave(FRAMES, 0)  # background 0 outside the frame
    grid = F.affine_grid(theta, [n * FRAMES, 1, SIDE, SIDE], align_corners=False)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(n, FRAMES, SIDE, SIDE) * 2 - 1


def video_unet() -> UNet2DConditionModel:
    """About 1.7M parameters: the image UNet's layout, frames as channels (and the keyframe as one
    more input channel), a wider 16x16 level."""
    return digit_unet(FRAMES, (32, 64, 64), extra_inputs=1)


def keyframe_folder(folder: Path, name: str) -> Path:
    """The keyframe model ``name`` of the video model in ``folder``: an absolute path, a folder
    beside ``folder``, or one in the repository's models/."""
    named = Path(name)
    candidates = [named] if named.is_absolute() else [folder.resolve().parent / named, MODELS_DIR / named]
    for candidate in candidates:
        if (candidate / "unet").is_dir():
            return candidate
    raise FileNotFoundError(
        f"the video model in {folder} draws its keyframes with the image model {name!r}, which is neither "
        f"beside it nor in {MODELS_DIR}: put that model folder there or name another in {folder / KEYFRAMES_FILE}")


class VideoKind:
    """For `train.Trainer(kind=VideoKind)`: a training sample is a clip of a random digit and motion."""

    builder = VIDEO_BUILDER
    defaults: dict[str, object] = {"steps": 25, "guidance": 2.0, "scheduler": "ddim", "frames": FRAMES,
                                   "width": SIDE, "height": SIDE}

    @staticmethod
    def make_unet() -> UNet2DConditionModel:
        return video_unet()

    @staticmethod
    def table(text: TextConditioner) -> torch.Tensor:
        """(10, motions, forms x phrases, 384): the embedding of every training caption."""
        rows = video_captions(VIDEO_TRAIN_FORMS)
        vectors = text.encode([c for _, _, c in rows])[:, 0]
        return vectors.reshape(10, len(MOTION_NAMES), -1, TEXT_DIM)

    @staticmethod
    def batch(data: Digits, table: torch.Tensor, g: torch.Generator,
              size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(clips, caption embeddings, keyframes): the keyframe is the clip's still digit, noised."""
        idx = torch.randint(0, len(data.labels), (size,), generator=g)
        motions = torch.randint(0, len(MOTION_NAMES), (size,), generator=g)
        forms = torch.randint(0, table.shape[2], (size,), generator=g)
        labels, still = data.labels[idx], data.images[idx]
        level = torch.rand(size, 1, 1, 1, generator=g) * KEYFRAME_NOISE
        keyframes = still + level * torch.randn(still.shape, generator=g)
        return make_clips(still, motions), table[labels, motions, forms].clone(), keyframes

    @staticmethod
    def export_files(folder: Path) -> None:
        (folder / KEYFRAMES_FILE).write_text(json.dumps(KEYFRAME_MODEL, indent=2, sort_keys=True))


class VideoPipelineOutput(BaseOutput):
    frames: Any  #: one (frames, H, W, 3) array in [0, 1] per prompt ("np"), or (B, F, 16, 16) ("pt")


class DigitsVideoPipeline(DigitsPipeline):
    """The video model as a diffusers pipeline with the video engine's arguments. It always draws
    FRAMES frames of 16x16; other frame counts are its frames resampled in time, other sizes each
    frame resized, because the model knows no other. Each clip's keyframe is drawn first, by the
    image model its folder names (`keyframes`), from the same prompt and generator."""

    keyframes: DigitsPipeline | None = None  #: the keyframe model (None: the UNet takes no keyframe)
    keyframe_settings: dict[str, Any] | None = None  #: its keyframes.json (model, steps, guidance)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], text: TextConditioner | None = None) -> DigitsVideoPipeline:
        folder = Path(folder)
        text = (text or TextConditioner.default()).with_captions(train_pairs())
        pipe = super().from_folder(folder, text)
        assert isinstance(pipe, DigitsVideoPipeline)
        config = pipe.unet.config
        if config.in_channels != config.out_channels:
            record = folder / KEYFRAMES_FILE
            if not record.is_file():
                raise FileNotFoundError(f"{folder} holds a keyframe-conditioned video model without {KEYFRAMES_FILE}, "
                                        "which names the image model that draws its keyframes: retrain or add it")
            pipe.keyframe_settings = json.loads(record.read_text())
            pipe.keyframes = DigitsPipeline.from_folder(keyframe_folder(folder, pipe.keyframe_settings["model"]), text)
        return pipe

    def to(self, *args: Any, **kwargs: Any) -> DigitsVideoPipeline:
        super().to(*args, **kwargs)
        if self.keyframes is not None:
            self.keyframes.to(*args, **kwargs)
        return self

    @torch.no_grad()
    def sample(self, prompts: list[str], negative_prompts: list[str] | None = None, steps: int = 25,
               guidance: float = 2.0, generator: list[torch.Generator] | torch.Generator | None = None,
               callback_on_step_end: Any = None, context: torch.Tensor | None = None) -> torch.Tensor:
        """(B, FRAMES, 16, 16) in [0, 1]; ``context``: keyframes in [-1, 1] to use instead of drawing them."""
        if context is None and self.keyframes is not None and self.keyframe_settings is not None:
            settings = self.keyframe_settings
            still = self.keyframes.sample(prompts, negative_prompts, int(settings["steps"]),
                                          float(settings["guidance"]), generator)
            context = still * 2 - 1
        return super().sample(prompts, negative_prompts, steps, guidance, generator, callback_on_step_end, context)

    def prompt_match(self, prompt: str) -> ClipCaptionMatch:
        return ClipCaptionMatch(**asdict(self.text.match(prompt)), named=len(digits_named(prompt)))

    def __call__(self, prompt: str | list[str], negative_prompt: str | list[str] | None = None,  # type: ignore[override]
                 num_frames: int | None = None, width: int | None = None, height: int | None = None,
                 num_inference_steps: int = 25, guidance_scale: float = 2.0,
                 generator: list[torch.Generator] | torch.Generator | None = None, output_type: str = "np",
                 callback_on_step_end: Any = None, **_: Any) -> VideoPipelineOutput:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else negative_prompt
        clips = self.sample(prompts, negatives, num_inference_steps, guidance_scale, generator, callback_on_step_end)
        if output_type == "pt":
            return VideoPipelineOutput(frames=clips)
        count = num_frames or FRAMES
        pick = np.linspace(0, FRAMES - 1, count).round().astype(int) if count != FRAMES else np.arange(FRAMES)
        size = (width or SIDE, height or SIDE)
        videos = []
        for clip in clips.numpy()[:, pick]:
            frames = []
            for frame in clip:
                image = Image.fromarray((frame * 255).round().astype(np.uint8), mode="L")
                if image.size != size:
                    image = image.resize(size, Image.Resampling.BILINEAR)
                frames.append(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
            videos.append(np.stack(frames))
        return VideoPipelineOutput(frames=videos)


# -- evaluation -----------------------------------------------------------------------------------

def estimate_motion(clips01: torch.Tensor) -> np.ndarray:
    """The motion index of each (N, FRAMES, 16, 16) clip in [0, 1]: the motion whose transforms of
    the clip's middle frames best explain all its frames (least squared error)."""
    n = len(clips01)
    middle = clips01[:, FRAMES // 2 - 1: FRAMES // 2 + 1].mean(1, keepdim=True) * 2 - 1  # (N, 1, 16, 16)
    errors = []
    for m in range(len(MOTION_NAMES)):
        guess = (make_clips(middle, torch.full((n,), m)) + 1) / 2
        errors.append(((guess - clips01) ** 2).mean(dim=(1, 2, 3)))
    return torch.stack(errors, 1).argmin(1).numpy()


def evaluate_video(folder: str | os.PathLike[str], quick: bool = False, *, guidance: float = 2.0,
                   steps: int = 25, seed: int = 1234, text: TextConditioner | None = None) -> dict[str, Any]:
    """Measure the video model in ``folder``: every digit x motion, from training and held-out
    caption forms (one phrase per motion; ``quick``: fewer clips). Returns

    - ``frame_accuracy``: share of frames the image model's judge (`DigitClassifier`) reads as the
      prompt's digit; ``frame_accuracy_train_forms`` / ``_heldout_forms`` split by caption form;
    - ``temporal_consistency``: share of frames that agree with their clip's most frequent digit;
    - ``frame_change``: mean absolute change between consecutive frames (pixels in [0, 1]), next to
      ``frame_change_real`` of the training clips (0 would be a still image);
    - ``motion_accuracy``: share of clips whose estimated motion (`estimate_motion`) is the prompt's,
      next to ``motion_accuracy_real`` of the estimator on real clips;
    - the judge's accuracy on frames of real clips, the counts and the speed.
    """
    from .classifier import DigitClassifier
    from .data import load_digits

    pipe = DigitsVideoPipeline.from_folder(folder, text)
    judge = DigitClassifier.train()
    rows: list[tuple[int, int, bool, str]] = []
    for heldout, forms in enumerate((VIDEO_TRAIN_FORMS, VIDEO_HELDOUT_FORMS)):
        # quick: one form of each group; the phrase alternates so every phrase is used
        chosen = forms[:1] if quick else forms
        for d in range(10):
            for m, name in enumerate(MOTION_NAMES):
                for i, f in enumerate(chosen):
                    phrase = PHRASES[name][(d + i) % len(PHRASES[name])]
                    rows.append((d, m, bool(heldout), f.format(w=WORDS[d], d=d, m=phrase)))
    clips = []
    start = time.perf_counter()
    for lo in range(0, len(rows), 64):
        chunk = rows[lo:lo + 64]
        gens = [torch.Generator().manual_seed(seed + lo + i) for i in range(len(chunk))]
        clips.append(pipe.sample([r[3] for r in chunk], steps=steps, guidance=guidance, generator=gens))
    elapsed = time.perf_counter() - start
    video = torch.cat(clips)  # (N, FRAMES, 16, 16) in [0, 1]
    digits = np.array([r[0] for r in rows])
    heldout = np.array([r[2] for r in rows])
    seen = judge.predict(video.reshape(-1, 1, SIDE, SIDE)).reshape(len(rows), FRAMES)
    right = seen == digits[:, None]
    majority = np.array([np.bincount(r, minlength=10).max() for r in seen]) / FRAMES
    motions = estimate_motion(video)

    real = load_digits("test")
    real_motions = torch.arange(len(real.labels)) % len(MOTION_NAMES)
    real_clips = (make_clips(real.images, real_motions) + 1) / 2
    real_seen = judge.predict(real_clips.reshape(-1, 1, SIDE, SIDE)).reshape(len(real.labels), FRAMES)
    return {
        "clips": len(rows),
        "frames": FRAMES,
        "guidance": guidance,
        "steps": steps,
        "frame_accuracy": float(right.mean()),
        "frame_accuracy_train_forms": float(right[~heldout].mean()),
        "frame_accuracy_heldout_forms": float(right[heldout].mean()),
        "per_digit": [float(right[digits == d].mean()) for d in range(10)],
        "temporal_consistency": float(majority.mean()),
        "frame_change": float((video[:, 1:] - video[:, :-1]).abs().mean()),
        "frame_change_real": float((real_clips[:, 1:] - real_clips[:, :-1]).abs().mean()),
        "motion_accuracy": float((motions == np.array([r[1] for r in rows])).mean()),
        "per_motion": {name: float((motions == m)[[r[1] == m for r in rows]].mean())
                       for m, name in enumerate(MOTION_NAMES)},
        "motion_accuracy_real": float((estimate_motion(real_clips) == real_motions.numpy()).mean()),
        "judge_accuracy_on_real_clip_frames": float((real_seen == real.labels.numpy()[:, None]).mean()),
        "clips_per_s": len(rows) / elapsed,
        "parameters": sum(p.numel() for p in pipe.unet.parameters()),
    }


def sample_strip(folder: str | os.PathLike[str], path: Path, text: TextConditioner | None = None,
                 seed: int = 0) -> None:
    """One row per motion (digit 0..5 in turn), FRAMES frames across, enlarged 3x."""
    pipe = DigitsVideoPipeline.from_folder(folder, text)
    prompts = [f"a {WORDS[m]} {PHRASES[name][0]}" for m, name in enumerate(MOTION_NAMES)]
    gens = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    clips = pipe.sample(prompts, generator=gens)  # (6, F, 16, 16)
    grid = clips.permute(0, 2, 1, 3).reshape(len(prompts) * SIDE, FRAMES * SIDE)
    Image.fromarray((grid.numpy() * 255).round().astype("uint8"), mode="L").resize(
        (FRAMES * SIDE * 3, len(prompts) * SIDE * 3), Image.Resampling.NEAREST).save(path)


