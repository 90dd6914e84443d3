"""The model card of a trained digit model: how it was made and what it measures, in its folder.

`training.json` holds the numbers (the tests compare the committed weights against its ``eval``);
README.md says the same for people; samples.png shows one row per digit.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from PIL import Image

from .classifier import DigitClassifier
from .data import HELDOUT_FORMS, TRAIN_FORMS, WORDS
from .evaluate import ImageEval, evaluate_image
from .pipeline import DigitsPipeline

#: guidance scales the card reports (the served default is 2)
GUIDANCE_SWEEP = (1.0, 2.0, 5.0)


def sample_grid(pipe: DigitsPipeline, path: Path, per_digit: int = 8, seed: int = 0) -> None:
    prompts = [f"a handwritten {WORDS[d]}" for d in range(10) for _ in range(per_digit)]
    gens = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    pixels = pipe.sample(prompts, generator=gens)[:, 0]
    grid = pixels.reshape(10, per_digit, 16, 16).permute(0, 2, 1, 3).reshape(160, per_digit * 16)
    Image.fromarray((grid.numpy() * 255).round().astype("uint8"), mode="L").resize(
        (per_digit * 48, 480), Image.Resampling.NEAREST).save(path)


def write_card(folder: Path, pipe: DigitsPipeline, *, per_caption: int = 3) -> dict[str, object]:
    """Evaluate the model in ``folder`` and write its card; returns the recorded evaluation."""
    judge = DigitClassifier.train()
    # the served guidance measured on more images; the others, for the sweep, on fewer
    runs: dict[float, ImageEval] = {g: evaluate_image(pipe, judge, guidance=g,
                                                      per_caption=per_caption if g == 2.0 else 1)
                                    for g in GUIDANCE_SWEEP}
    main = runs[2.0]
    record = json.loads((folder / "training.json").read_text())
    record["eval"] = {**asdict(main), "judge_accuracy_on_real_test_digits": judge.test_accuracy,
                      "guidance_sweep": {str(g): r.accuracy for g, r in runs.items()},
                      "parameters": sum(p.numel() for p in pipe.unet.parameters())}
    (folder / "training.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    sample_grid(pipe, folder / "samples.png")
    c, e = record["config"], record["eval"]
    per_digit = ", ".join(f"{a:.2f}" for a in main.per_digit)
    sweep = ", ".join(f"guidance {g}: {a:.3f}" for g, a in e["guidance_sweep"].items())
    (folder / "README.md").write_text(f"""# digits-image: text-to-digit diffusion, trained here

The default image model of genloom (`GENLOOM_IMAGE_MODEL` unset). A pixel-space
`UNet2DConditionModel` ({e['parameters']:,} parameters, 16x16x1) trained with DDPM (1000 steps,
linear betas, epsilon prediction) on scikit-learn's handwritten digits (8x8, upscaled bilinearly
to 16x16), conditioned on the all-MiniLM-L6-v2 sentence embedding of a caption (one cross-attention
token). Served with DDIM, 25 steps, classifier-free guidance 2 (the unconditional token is the
zero vector, trained by {c['caption_dropout']:.0%} caption dropout).

## Training

- command: `{record['command']}` (the run's checkpoints go to GENLOOM_CACHE_DIR/runs/digits-image;
  rerunning resumes; a fresh folder retrains from scratch to the same weights on the same thread count)
- seed {c['seed']}, {record['step']} steps of {c['batch_size']} images, AdamW lr {c['lr']} (constant after
  {c['warmup']} warm-up steps), gradient clipping 1.0, EMA {c['ema_decay']} (the exported weights)
- data: `sklearn.datasets.load_digits`, 80% split (seeded permutation, seed 0) = 1437 images;
  sha256 of the raw images and labels `{record['data_sha256']}`
- captions: {len(TRAIN_FORMS)} forms per digit in training (e.g. "a handwritten seven", "the digit 7",
  "7", "digit seven, thick strokes"); {len(HELDOUT_FORMS)} held out for evaluation
  ({", ".join(repr(f.format(w='seven', d=7)) for f in HELDOUT_FORMS)})
- final training loss (mean of the last 100 steps): {record['final_loss_mean_last_100']:.4f}

## Quality

Conditional accuracy: each digit drawn {per_caption} times from every caption form (seeded), judged
by an RBF SVM trained on the real training digits ({e['judge_accuracy_on_real_test_digits']:.1%}
accurate on the held-out real ones).

| | accuracy |
|---|---|
| all {main.images} images (guidance 2, DDIM 25) | {main.accuracy:.3f} |
| caption forms seen in training | {main.train_forms:.3f} |
| held-out caption forms | {main.heldout_forms:.3f} |
| per digit 0..9 | {per_digit} |

Guidance: {sweep}. Speed: {main.images_per_s:.1f} images/s (batches of 64, one CPU thread, measured
while the machine ran other work).

![samples: one row per digit, "a handwritten <digit>"](samples.png)

## Limits

It knows ten digits and nothing else. A prompt far from every training caption (no digit, two
digits, nonsense) still gets an image; the job's artifact events say `prompt_match.known: false`.
""")
    return record["eval"]
