"""The report's figures (PNG, matplotlib's Agg backend): training loss curves of the digit models,
a grid of the images the image section drew, per-digit accuracy, and the quantisation table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from infra.models.digits import MODELS_DIR


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def moving_average(values: list[float], width: int) -> np.ndarray:
    """Mean of each run of ``width`` values (``len(values) - width + 1`` of them)."""
    x = np.asarray(values, dtype=np.float64)
    width = max(1, min(width, len(x)))
    c = np.cumsum(np.insert(x, 0, 0.0))
    return (c[width:] - c[:-width]) / width


def loss_curves(out: Path, models_dir: Path = MODELS_DIR) -> Path | None:
    """Per-step training loss of every models/digits-*/losses.json and its moving average."""
    runs = {p.parent.name: json.loads(p.read_text()) for p in sorted(models_dir.glob("digits-*/losses.json"))}
    if not runs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, losses in runs.items():
        width = max(1, len(losses) // 50)
        line, = ax.plot(losses, alpha=0.25, linewidth=0.6)
        ax.plot(np.arange(width - 1, len(losses)), moving_average(losses, width), color=line.get_color(),
                label=f"{name} (mean of {width} steps)")
    ax.set(xlabel="step", ylabel="training loss (noise MSE)", yscale="log", title="Digit models: training loss")
    ax.legend()
    fig.tight_layout()
    path = out / "loss_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sample_grid(images01: np.ndarray, out: Path, columns: int = 10, name: str = "image_samples.png") -> Path:
    """(N, 16, 16) images in [0, 1] as rows of ``columns`` (one digit per column when drawn in order)."""
    plt = _pyplot()
    rows = int(np.ceil(len(images01) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.7, rows * 0.7))
    for ax, i in zip(np.ravel(axes), range(rows * columns)):
        ax.axis("off")
        if i < len(images01):
            ax.imshow(images01[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    fig.suptitle("Drawn by models/digits-image (one column per digit 0-9)", fontsize=9)
    fig.tight_layout()
    path = out / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def per_digit_bars(per_digit: list[float], out: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.bar(range(10), per_digit, color="tab:blue")
    ax.set(xticks=range(10), xlabel="digit asked for", ylabel="judged correct", ylim=(0, 1.05),
           title="Image model: conditional accuracy per digit")
    fig.tight_layout()
    path = out / "image_per_digit.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def quantisation_chart(rows: list[dict[str, Any]], out: Path) -> Path | None:
    """Per model, int8 against float32: speed, weight memory and quality as ratios."""
    models = sorted({r["model"] for r in rows})
    pairs = [(next(r for r in rows if r["model"] == m and r["variant"] == "float32"),
              next((r for r in rows if r["model"] == m and r["variant"] != "float32"), None)) for m in models]
    pairs = [(f, q) for f, q in pairs if q is not None]
    if not pairs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3))
    labels = ["speed", "weight memory", "quality"]
    for i, (f, q) in enumerate(pairs):
        ratios = [q["speed"] / f["speed"], q["weight_mb"] / f["weight_mb"], q["quality"] / f["quality"]]
        ax.bar(np.arange(3) + i * 0.38, ratios, width=0.36, label=f["model"])
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set(xticks=np.arange(3) + 0.19, xticklabels=labels, ylabel="int8 / float32",
           title="int8 against float32 (quality: perplexity for text, accuracy for the UNet)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "quantisation.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
