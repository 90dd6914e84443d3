"""`genloom eval`: evaluate the served default models and write the report (docs/eval/)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import typer

from infra.evaluation.report import SECTIONS


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def evaluate(
    only: str = typer.Option(",".join(SECTIONS), help="Comma-separated sections: " + ", ".join(SECTIONS) + "."),
    quick: bool = typer.Option(False, help="Fewer samples (for tests and a first look)."),
    out: Path = typer.Option(Path("docs/eval"), help="Folder of the report."),
    plots: bool = typer.Option(True, help="Write the PNG figures (needs matplotlib, the `eval` extra)."),
    threads: int = typer.Option(1, min=1, help="torch threads (1 is what the workers use per process)."),
    keep: bool = typer.Option(True, help="Keep the sections of the report already in --out that --only leaves out "
                                         "(each with the run that measured it)."),
) -> None:
    """Evaluate the default models and write report.md, report.json and the figures."""
    import torch
    from tqdm import tqdm

    from infra.evaluation.image import evaluate_image_model
    from infra.evaluation.quant import evaluate_quantisation
    from infra.evaluation.report import with_earlier, write_report
    from infra.evaluation.speech import evaluate_speech
    from infra.evaluation.text import evaluate_text
    from infra.evaluation.video import evaluate_video
    from infra.settings import StorageSettings

    picked = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [s for s in picked if s not in SECTIONS]
    if unknown:
        raise typer.BadParameter(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    figures = out if plots else None
    cache_dir = StorageSettings().cache_dir
    start, load_start = time.perf_counter(), _loadavg()
    results: dict[str, dict[str, Any]] = {}
    with tqdm(picked, desc="eval", unit="section") as bar:
        def note(text: str) -> None:
            bar.set_postfix_str(text, refresh=True)

        runners = {
            "image": lambda: evaluate_image_model(quick=quick, cache_dir=cache_dir, figures=figures, note=note),
            "video": lambda: evaluate_video(quick=quick),
            "text": lambda: evaluate_text(quick=quick, note=note),
            "speech": lambda: evaluate_speech(quick=quick, note=note),
            "quant": lambda: evaluate_quantisation(quick=quick, note=note),
        }
        for name in bar:
            bar.set_postfix_str(name, refresh=True)
            results[name] = runners[name]()
    command = f"genloom eval --only {','.join(picked)} --threads {threads}" + (" --quick" if quick else "") \
        + ("" if plots else " --no-plots") + ("" if out == Path("docs/eval") else f" --out {out}")
    run = {"command": command,
           "seconds": time.perf_counter() - start, "cpus": os.cpu_count(), "threads": threads,
           "machine": f"{platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}",
           "loadavg_start": load_start, "loadavg_end": _loadavg()}
    if keep:
        results = with_earlier(results, out, run)
    written: list[str] = []
    if plots:
        from infra.evaluation import plots as charts

        for path in (charts.loss_curves(out), *(out / n for n in ("image_samples.png", "image_per_digit.png"))):
            if path is not None and path.is_file():
                written.append(path.name)
        if "quant" in results and (path := charts.quantisation_chart(results["quant"]["rows"], out)) is not None:
            written.append(path.name)
    typer.echo(f"wrote {write_report(results, out, run=run, figures=written)}")
