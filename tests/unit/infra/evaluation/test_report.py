"""The report renders every section from its figures, and the plots are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infra.evaluation.report import write_report

RESULTS = {
    "image": {"available": True, "folder": "models/digits-image", "accuracy": 0.97, "images": 360,
              "train_forms": 0.98, "heldout_forms": 0.95, "judge_accuracy_on_real": 0.99, "images_per_s": 2.0,
              "per_digit": [0.9] * 10,
              "fid": {"reference": "real test digits (360)", "generated": 360, "floor_sample": "360",
                      "judge": 3.2, "judge_floor": 0.4, "inception": 41.0, "inception_floor": 12.0,
                      "inception_samples": 200}},
    "video": {"available": False, "folder": "models/digits-video", "reason": "no trained video model folder"},
    "text": {"model": "m", "dtype": "float32", "perplexity_sklearn_prose": 21.0, "perplexity_sklearn_prose_tokens": 900,
             "perplexity_sklearn_prose_paragraphs": 60, "perplexity_references": 30.0, "perplexity_references_tokens": 200,
             "bleu": 12.5, "rouge": {"rouge1": 0.5, "rouge2": 0.3, "rougeL": 0.45}, "prompts": 20, "threads": 1,
             "tokens_per_s": 9.0, "max_new_tokens": 40,
             "examples": [{"prompt": "p", "reference": "r", "answer": "a"}]},
    "speech": {"voice": "v", "real_time_factor": 0.2, "synthesis_s": 2.0, "audio_s": 10.0, "sentences": 20,
               "round_trip_wer": 0.25, "recogniser": "pocketsphinx", "examples": [{"text": "t", "heard": "h"}]},
    "quant": {"engine": "x86", "threads": 1, "rows": [
        {"model": "text", "variant": "float32", "weight_mb": 538.0, "speed": 8.0, "speed_unit": "tokens/s",
         "quality": 49.0, "quality_name": "perplexity", "linear_share": 0.8},
        {"model": "text", "variant": "int8 dynamic (Linear)", "weight_mb": 248.0, "speed": 9.0,
         "speed_unit": "tokens/s", "quality": 140.0, "quality_name": "perplexity", "linear_share": 0.8}]},
}


def test_every_section_is_rendered(tmp_path: Path) -> None:
    run = {"command": "genloom eval", "seconds": 1.0, "cpus": 2, "threads": 1, "machine": "x86_64",
           "loadavg_start": [1.0, 1.0, 1.0], "loadavg_end": [2.0, 1.5, 1.0]}
    report = write_report(RESULTS, tmp_path, run=run, figures=["loss_curves.png"]).read_text()
    for text in ("FID, Inception (200 drawn vs 200 real test digits) | 41.0", "FID, judge's space",
                 "no trained video model folder", "| BLEU (20 prompts) | 12.5 |", "real-time factor | 0.20",
                 "| text | int8 dynamic (Linear) | 248.0 | 9.00 tokens/s", "machine load", "![loss_curves]"):
        assert text in report, text
    assert json.loads((tmp_path / "report.json").read_text())["run"]["cpus"] == 2


def test_plots_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from infra.evaluation import plots

    assert plots.moving_average([1, 2, 3, 4], 2).tolist() == [1.5, 2.5, 3.5]
    written = [plots.loss_curves(tmp_path),
               plots.sample_grid(np.random.default_rng(0).random((20, 16, 16)), tmp_path),
               plots.per_digit_bars([0.5] * 10, tmp_path),
               plots.quantisation_chart(RESULTS["quant"]["rows"], tmp_path)]
    assert all(p is not None and p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_a_run_of_one_section_keeps_the_others_with_the_run_that_measured_them(tmp_path: Path) -> None:
    from infra.evaluation.report import with_earlier

    first = {"command": "genloom eval --only image,text", "seconds": 9.0, "cpus": 2, "threads": 1, "machine": "m",
             "loadavg_start": [1.0], "loadavg_end": [1.0]}
    write_report({"image": RESULTS["image"], "text": RESULTS["text"]}, tmp_path, run=first)
    second = {**first, "command": "genloom eval --only text", "seconds": 3.0}
    text = {**RESULTS["text"], "bleu": 20.0}
    merged = with_earlier({"text": text}, tmp_path, second)
    assert merged["image"]["run"] == first and merged["text"]["run"] == second
    assert "video" not in merged  # nothing measured it, before or now
    report = write_report(merged, tmp_path, run=second).read_text()
    assert "## The run of image" in report and "## The run of text" in report and "## This run" not in report
    assert "| BLEU (20 prompts) | 20.0 |" in report and "FID, Inception" in report
    again = with_earlier({"text": text}, tmp_path, second)  # the merged report merges the same way
    assert again["image"]["run"] == first
