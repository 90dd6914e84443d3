"""`genloom train image|video`: train the default image or video model on this machine (seeded, resumable).

The run's checkpoints go to ``--run-dir``; the finished model (EMA weights, scheduler, marker,
training record, card) goes to ``--out``, which is what the image worker serves by default.
Rerunning the same command resumes from the last checkpoint. ``--processes 2`` trains
data-parallel (gloo), each process with ``--threads`` threads, to the same weights.
"""

from __future__ import annotations

from pathlib import Path

import typer

from infra.models.digits import IMAGE_MODEL_DIR, VIDEO_MODEL_DIR
from infra.settings import StorageSettings

train_app = typer.Typer(help="Train the small default models on this machine.", no_args_is_help=True)


def _kind(name: str):
    if name == "video":
        from infra.models.digits.video import VideoKind

        return VideoKind
    from infra.models.digits.train import ImageKind

    return ImageKind


def _train(rank: int, world: int, config, run_dir: Path, kind: str = "image") -> None:
    """One training process (of ``world``); rank 0 shows the progress bar and writes checkpoints."""
    from tqdm import tqdm

    from infra.models.digits.model import TextConditioner
    from infra.models.digits.train import Trainer

    trainer = Trainer(config, run_dir, TextConditioner.default(), rank=rank, world=world, kind=_kind(kind))
    if trainer.resume() and rank == 0:
        typer.echo(f"resuming {run_dir} at step {trainer.step}")
    with tqdm(total=config.steps, initial=trainer.step, desc=f"train {kind}", unit="step", disable=rank != 0) as bar:
        def on_step(step: int, loss: float) -> None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{sum(trainer.losses[-20:]) / 20:.4f}")
        trainer.run(on_step)


def _run(kind: str, config, processes: int, run_dir: Path, out: Path, command: str):
    """Train (resuming from ``run_dir``), then export the EMA weights to ``out``; returns the text
    conditioner and the trainer, for the card."""
    from infra.models.digits.model import TextConditioner
    from infra.models.digits.train import Trainer

    if processes > 1:
        from infra.models.digits.distributed import run_data_parallel

        run_data_parallel(processes, _train, config, run_dir, kind)
    else:
        _train(0, 1, config, run_dir, kind)
    text = TextConditioner.default()
    trainer = Trainer(config, run_dir, text, kind=_kind(kind))
    trainer.resume()
    trainer.export(out, {"command": command})
    typer.echo(f"model written to {out}")
    return text


@train_app.command("image")
def image(
    steps: int = typer.Option(3000, help="Optimizer steps."),
    batch_size: int = typer.Option(64, help="Images per step (split over the processes)."),
    seed: int = typer.Option(0, help="Seeds the weights and every random draw of training."),
    threads: int = typer.Option(2, help="torch threads per process."),
    processes: int = typer.Option(1, help="Data-parallel training processes (torch.distributed, gloo)."),
    run_dir: Path = typer.Option(None, help="Checkpoints (default GENLOOM_CACHE_DIR/runs/digits-image)."),
    out: Path = typer.Option(IMAGE_MODEL_DIR, help="Where the trained model is written."),
    evaluate: bool = typer.Option(True, help="Measure the model and write its card (README.md) after training."),
) -> None:
    """Train the text-to-digit diffusion model (DDPM, caption dropout for guidance) and export it."""
    from infra.models.digits.train import TrainConfig

    run_dir = run_dir or StorageSettings().cache_dir / "runs" / "digits-image"
    config = TrainConfig(steps=steps, batch_size=batch_size, seed=seed, threads=threads)
    text = _run("image", config, processes, run_dir, out,
                f"genloom train image --steps {steps} --batch-size {batch_size} --seed {seed}"
                f" --threads {threads} --processes {processes}")
    if evaluate:
        from infra.models.digits.card import write_card
        from infra.models.digits.pipeline import DigitsPipeline

        result = write_card(out, DigitsPipeline.from_folder(out, text))
        typer.echo(f"conditional accuracy {result['accuracy']:.3f} (held-out captions {result['heldout_forms']:.3f})")


@train_app.command("video")
def video(
    steps: int = typer.Option(4800, help="Optimizer steps."),
    batch_size: int = typer.Option(48, help="Clips per step (split over the processes)."),
    seed: int = typer.Option(0, help="Seeds the weights and every random draw of training."),
    threads: int = typer.Option(2, help="torch threads per process."),
    processes: int = typer.Option(1, help="Data-parallel training processes (torch.distributed, gloo)."),
    run_dir: Path = typer.Option(None, help="Checkpoints (default GENLOOM_CACHE_DIR/runs/digits-video)."),
    out: Path = typer.Option(VIDEO_MODEL_DIR, help="Where the trained model is written."),
    evaluate: bool = typer.Option(True, help="Measure the model and write its card (README.md) after training."),
    full_eval: bool = typer.Option(True, help="Measure on every caption form (else the quick sample only)."),
) -> None:
    """Train the text-to-video digit model (moving digits; same trainer as the image model) and export it."""
    from infra.models.digits.train import TrainConfig

    run_dir = run_dir or StorageSettings().cache_dir / "runs" / "digits-video"
    config = TrainConfig(steps=steps, batch_size=batch_size, seed=seed, threads=threads)
    text = _run("video", config, processes, run_dir, out,
                f"genloom train video --steps {steps} --batch-size {batch_size} --seed {seed}"
                f" --threads {threads} --processes {processes}")
    if evaluate:
        from infra.models.digits.video_card import write_video_card

        result = write_video_card(out, text, full=full_eval)
        typer.echo(f"per-frame accuracy {result['frame_accuracy']:.3f}, motion accuracy {result['motion_accuracy']:.3f}")


@train_app.command("distill")
def distill(
    teacher: Path = typer.Option(IMAGE_MODEL_DIR, help="The image model to distil (sampled with DDIM and guidance)."),
    target_steps: int = typer.Option(4, help="Sampling steps of the student: 16, 8 or 4 (halved from 32)."),
    steps_per_round: int = typer.Option(600, help="Optimizer steps of each halving round."),
    batch_size: int = typer.Option(64, help="Images per step."),
    guidance: float = typer.Option(2.0, help="The teacher's guidance, built into the student."),
    seed: int = typer.Option(0, help="Seeds every random draw of distillation."),
    threads: int = typer.Option(2, help="torch threads."),
    out: Path = typer.Option(IMAGE_MODEL_DIR.parent / "digits-image-4step", help="Where the student is written."),
    evaluate: bool = typer.Option(True, help="Measure the student against its teacher (conditional accuracy, "
                                             "images/s) and record it in distilled.json."),
) -> None:
    """Distil the image model to few sampling steps (progressive distillation, guidance built in):
    one UNet call a step instead of two, 4 steps instead of 25."""
    from tqdm import tqdm

    from infra.models.digits.distill import DistillConfig, Distiller, export_distilled
    from infra.models.digits.model import TextConditioner
    from infra.models.digits.train import load_unet

    config = DistillConfig(target_steps=target_steps, steps_per_round=steps_per_round, batch_size=batch_size,
                           guidance=guidance, seed=seed, threads=threads)
    text = TextConditioner.default()
    distiller = Distiller(load_unet(teacher), config, text)
    bar = tqdm(total=0, unit="step")

    def on_round(steps: int) -> None:
        bar.reset(total=steps_per_round)
        bar.set_description(f"distil to {steps} steps")

    def on_step(step: int, loss: float) -> None:
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss:.4f}")

    student = distiller.run(on_round, on_step)
    bar.close()
    metrics, chosen, kind = None, student, "student"
    if evaluate:
        from infra.models.digits.distill import compare

        metrics = compare(teacher, student, text, target_steps, guided=distiller.guided, note=typer.echo)
        guided = next(v for k, v in metrics.items() if k.startswith("guidance distilled"))
        if guided["accuracy"] > next(v for k, v in metrics.items() if k.startswith("student"))["accuracy"]:
            chosen, kind = distiller.guided, "guidance distilled only"  # the halvings cost accuracy here
    export_distilled(chosen, teacher, out, distiller, metrics, exported=kind)
    typer.echo(f"wrote {out} ({kind})")
