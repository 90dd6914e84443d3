"""The model card of the video model: `evaluate_video`'s numbers in training.json, README.md, samples.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .model import TextConditioner
from .video import FRAMES, KEYFRAME_NOISE, KEYFRAMES_FILE, MOTION_NAMES, PHRASES, VIDEO_HELDOUT_FORMS, VIDEO_TRAIN_FORMS, evaluate_video, sample_strip


def write_video_card(folder: Path, text: TextConditioner | None = None, full: bool = True) -> dict[str, Any]:
    """Evaluate the model in ``folder`` and write its card; returns the recorded evaluation.
    ``full=False`` measures only the quick sample (on a busy machine), and the card says so."""
    folder = Path(folder)
    text = text or TextConditioner.default()
    quick = evaluate_video(folder, quick=True, text=text)
    result = evaluate_video(folder, text=text) if full else quick
    record = json.loads((folder / "training.json").read_text())
    record["eval"] = result
    record["eval_quick"] = quick  # what the tests re-measure, with their tolerance
    (folder / "training.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    sample_strip(folder, folder / "samples.png", text)
    c, e = record["config"], result
    keyframes = json.loads((folder / KEYFRAMES_FILE).read_text())
    per_digit = ", ".join(f"{a:.2f}" for a in e["per_digit"])
    per_motion = ", ".join(f"{m} {a:.2f}" for m, a in e["per_motion"].items())
    (folder / "README.md").write_text(f"""# digits-video: text-to-video of moving digits, trained here

The default video model of genloom (`GENLOOM_VIDEO_MODEL` unset). It draws {FRAMES} frames of 16x16
of a handwritten digit drifting left, right, up or down (half a pixel a frame) or rotating clockwise
or anticlockwise (5 degrees a frame). Two stages, like Emu Video or Stable Video Diffusion: the
image model `{keyframes['model']}` ({keyframes['steps']} steps, guidance {keyframes['guidance']}; named in
`keyframes.json`) draws the clip's keyframe, the still digit, from the caption; this model draws the
clip from the caption and the keyframe. It is a pixel-space `UNet2DConditionModel`
({e['parameters']:,} parameters) whose output channels are the clip's {FRAMES} frames and whose
input is those frames, noised, with the keyframe as one more channel; it is conditioned on the
all-MiniLM-L6-v2 embedding of the caption (one cross-attention token), which has the motion to say.
DDPM training (1000 steps, linear betas, epsilon prediction) on real digits as keyframes with
Gaussian noise of a standard deviation drawn up to {KEYFRAME_NOISE}; served with DDIM, 25 steps,
classifier-free guidance 2 over the caption (zero vector as the unconditional token, trained by
{c['caption_dropout']:.0%} caption dropout; both halves see the keyframe). Same trainer, sampler
and text conditioning as models/digits-image (infra/models/digits/). Other frame counts are its
frames resampled in time; other sizes, each frame resized.

## Training

- command: `{record['command']}` (checkpoints in GENLOOM_CACHE_DIR/runs/digits-video; rerunning resumes;
  `--processes 2` trains data-parallel with gloo to the same weights)
- seed {c['seed']}, {record['step']} steps of {c['batch_size']} clips, AdamW lr {c['lr']} (constant after
  {c['warmup']} warm-up steps), gradient clipping 1.0, EMA {c['ema_decay']} (the exported weights)
- data: the 1437 training digits of `sklearn.datasets.load_digits` (the image model's split), each step
  drawing digits, motions and captions at random; sha256 of the raw images and labels
  `{record['data_sha256']}`
- captions: {len(VIDEO_TRAIN_FORMS)} sentence forms x {len(next(iter(PHRASES.values())))} phrases per motion
  (e.g. "a three drifting to the left", "the digit 3 moving left", "3 rotating clockwise");
  {len(VIDEO_HELDOUT_FORMS)} forms held out for evaluation
  ({", ".join(repr(f.format(w='three', d=3, m='moving left')) for f in VIDEO_HELDOUT_FORMS)})
- final training loss (mean of the last 100 steps): {record['final_loss_mean_last_100']:.4f}

## Quality

Every digit x motion from {"every caption form" if full else "one seen and one held-out caption form (quick)"}
({e['clips']} clips, seeded, guidance {e['guidance']},
DDIM {e['steps']}). Frames judged by the image model's digit classifier (an RBF SVM trained on real
digits; {e['judge_accuracy_on_real_clip_frames']:.1%} accurate on frames of real moving-digit clips).
Motion estimated by matching each motion's transforms of the clip's middle frames to its frames
({e['motion_accuracy_real']:.1%} right on real clips).

| | value |
|---|---|
| per-frame conditional accuracy | {e['frame_accuracy']:.3f} |
| ... caption forms seen in training | {e['frame_accuracy_train_forms']:.3f} |
| ... held-out caption forms | {e['frame_accuracy_heldout_forms']:.3f} |
| temporal consistency (frames agreeing with their clip's majority digit) | {e['temporal_consistency']:.3f} |
| mean change between consecutive frames (real clips: {e['frame_change_real']:.3f}) | {e['frame_change']:.3f} |
| motion direction accuracy | {e['motion_accuracy']:.3f} |
| per motion | {per_motion} |
| per digit 0..9 (frames) | {per_digit} |

Speed: {e['clips_per_s']:.1f} clips/s with their keyframes (batches of 64, one CPU thread).

![samples: one row per motion ({", ".join(MOTION_NAMES)}), frames left to right](samples.png)

## Limits

Ten digits, six motions, 16x16, {FRAMES} frames, nothing else. A prompt far from every training caption
(no digit, two digits, nonsense) still gets a clip; the job's artifact events say `prompt_match.known: false`.
""")
    return result
