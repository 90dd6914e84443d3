"""Moderation quality on a labelled set written for it: per-category precision and recall of the
default classifier and thresholds (bench/data/moderation_texts.tsv: harmful and clean texts, some
obfuscated), a threshold sweep that shows why the defaults were chosen, and the image classifier's
false positives on images generated here (none harmful: no such data ships, so image recall is not
measured). Classifier speed is measured on the same run.

    .venv/bin/python bench/moderation_quality.py      # writes bench/results/moderation_quality.json
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.moderation.image import NsfwImageClassifier  # noqa: E402
from infra.moderation.lexicon import IMPLIES  # noqa: E402
from infra.moderation.moderator import build_moderator  # noqa: E402
from infra.moderation.policy import DEFAULT_THRESHOLDS  # noqa: E402
from infra.settings.moderation import ModerationSettings  # noqa: E402
from schemas.enums import ModerationCategory as C  # noqa: E402

DATA = ROOT / "bench" / "data" / "moderation_texts.tsv"
OUT = ROOT / "bench" / "results" / "moderation_quality.json"
SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
#: images generated per kind (solid colours, gradients, noise, shapes, skin-tone fields)
IMAGES_PER_KIND = 10


def load(path: Path = DATA) -> list[tuple[set[str], str, bool]]:
    """(gold categories with their parents, text, obfuscated) per row."""
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        labels, text, *flags = line.split("\t")
        gold = set() if labels == "clean" else set(labels.split(","))
        for child, parents in IMPLIES.items():
            if child.value in gold:
                gold |= {p.value for p in parents}
        unknown = gold - set(DEFAULT_THRESHOLDS)
        if unknown:
            raise ValueError(f"unknown labels {unknown} in {path.name}")
        rows.append((gold, text, "obf" in flags))
    return rows


def prf(tp: int, fp: int, fn: int) -> dict:
    return {"tp": tp, "fp": fp, "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None}


def texts(moderator, rows) -> dict:
    began = time.perf_counter()
    decisions = moderator.check([(None, text) for _, text, _ in rows])
    batch_ms = (time.perf_counter() - began) * 1000
    singles = []
    for _, text, _ in rows[:100]:
        t = time.perf_counter()
        moderator.check([(None, text)])
        singles.append((time.perf_counter() - t) * 1000)
    per_category = {}
    for c in C:
        tp = sum(1 for (g, _, _), d in zip(rows, decisions) if c.value in g and c.value in d.categories)
        fp = sum(1 for (g, _, _), d in zip(rows, decisions) if c.value not in g and c.value in d.categories)
        fn = sum(1 for (g, _, _), d in zip(rows, decisions) if c.value in g and c.value not in d.categories)
        per_category[c.value] = {**prf(tp, fp, fn), "gold": tp + fn}
    flagged = [not d.allowed for d in decisions]
    harmful = [bool(g) for g, _, _ in rows]
    obf = [o for _, _, o in rows]

    def rate(select, want):
        chosen = [f for f, h, o in zip(flagged, harmful, obf) if select(h, o)]
        return sum(1 for f in chosen if f == want) / len(chosen) if chosen else None

    sweep = {}
    for threshold in SWEEP:  # any category at or over the threshold flags the text
        pred = [any(s >= threshold for s in d.scores.values()) for d in decisions]
        tp = sum(p and h for p, h in zip(pred, harmful))
        fp = sum(p and not h for p, h in zip(pred, harmful))
        fn = sum(h and not p for p, h in zip(pred, harmful))
        sweep[str(threshold)] = prf(tp, fp, fn)
    misses = [{"labels": sorted(g), "text": t} for (g, t, _), f in zip(rows, flagged) if g and not f]
    false = [{"categories": d.categories, "text": t} for (g, t, _), d in zip(rows, decisions) if not g and not d.allowed]
    return {
        "texts": len(rows), "harmful": sum(harmful), "clean": len(rows) - sum(harmful), "obfuscated": sum(obf),
        "per_category": per_category,
        "flagged_harmful": rate(lambda h, o: h, True), "flagged_harmful_obfuscated": rate(lambda h, o: h and o, True),
        "passed_clean": rate(lambda h, o: not h, False), "passed_clean_obfuscated": rate(lambda h, o: not h and o, False),
        "sweep": sweep, "misses": misses, "false_positives": false,
        "batch_ms_per_text": batch_ms / len(rows), "single_ms_p50": statistics.median(singles),
    }


def generated_images() -> list[tuple[str, bytes]]:
    """Seeded images of five kinds, none harmful; skin-tone fields are the hard case for open_nsfw."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(13)
    out = []

    def png(array) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array.astype(np.uint8)).save(buffer, "PNG")
        return buffer.getvalue()

    for i in range(IMAGES_PER_KIND):
        out.append(("solid", png(np.broadcast_to(rng.integers(0, 256, 3), (128, 128, 3)))))
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        ramp = np.linspace(0, 1, 128)[:, None, None]
        out.append(("gradient", png(np.broadcast_to(a * (1 - ramp) + b * ramp, (128, 128, 3)))))
        out.append(("noise", png(rng.integers(0, 256, (128, 128, 3)))))
        image = Image.new("RGB", (128, 128), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = rng.integers(0, 100, 2)
            draw.ellipse((int(x), int(y), int(x) + 30, int(y) + 30), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        out.append(("shapes", buffer.getvalue()))
        tone = np.array([224, 172, 105]) * rng.uniform(0.6, 1.1)  # a skin tone, lit differently each time
        field = np.clip(tone + rng.normal(0, 12, (128, 128, 3)), 0, 255)
        out.append(("skin-tone", png(field)))
    return out


def images() -> dict:
    classifier = NsfwImageClassifier()
    items = generated_images()
    began = time.perf_counter()
    scores = classifier.scores([data for _, data in items])
    ms = (time.perf_counter() - began) * 1000 / len(items)
    sexual = [s["sexual"] for s in scores]
    threshold = DEFAULT_THRESHOLDS["sexual"]
    by_kind: dict[str, list[float]] = {}
    for (kind, _), s in zip(items, sexual):
        by_kind.setdefault(kind, []).append(s)
    return {"images": len(items), "harmful": 0, "threshold": threshold, "model": classifier.name,
            "false_positives": sum(s >= threshold for s in sexual), "max_score": max(sexual),
            "by_kind": {k: {"n": len(v), "max": max(v), "median": statistics.median(v)} for k, v in by_kind.items()},
            "ms_per_image": ms}


def main() -> None:
    moderator = build_moderator(ModerationSettings())
    result = {"model": moderator.name, "thresholds": DEFAULT_THRESHOLDS, "text": texts(moderator, load()),
              "image": images()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    t = result["text"]
    print(f"{t['texts']} texts: harmful flagged {t['flagged_harmful']:.3f} (obfuscated {t['flagged_harmful_obfuscated']:.3f}),"
          f" clean passed {t['passed_clean']:.3f}; {result['image']['false_positives']} of {result['image']['images']}"
          f" images wrongly flagged; wrote {OUT}")
    for name, v in t["per_category"].items():
        print(f"  {name:24s} P={v['precision']} R={v['recall']} (gold {v['gold']})")


if __name__ == "__main__":
    main()
