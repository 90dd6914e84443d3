"""`genloom train image`: train the default image model on this machine (seeded, resumable).

The run's checkpoints go to ``--run-dir``; the finished model (EMA weights, scheduler, marker,
training record) goes to ``--out``, which is what the image worker serves by default. Rerunning
the same command resumes from the last checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import typer

from infra.models.digits import IMAGE_MODEL_DIR
from infra.settings import StorageSettings

train_app = typer.Typer(help="Train the small default models on this machine.", no_args_is_help=True)



@train_app.command("image")
def image(
    steps: int = typer.Option(3000, help="Optimizer steps."),
    batch_size: int = typer.Option(64, help="Images per step."),
    seed: int = typer.Option(0, help="Seeds the weights and every random draw of training."),
    threads: int = typer.Option(2, help="torch threads."),
    run_dir: Path = typer.Option(None, help="Checkpoints (default GENLOOM_CACHE_DIR/runs/digits-image)."),
    out: Path = typer.Option(IMAGE_MODEL_DIR, help="Where the trained model is written."),
    evaluate: bool = typer.Option(True, help="Measure the model and write its card (README.md) after training."),
) -> None:
    """Train the text-to-digit diffusion model (DDPM, caption dropout for guidance) and export it."""
    from tqdm import tqdm

    from infra.models.digits.model import TextConditioner
    from infra.models.digits.train import Trainer, TrainConfig

    run_dir = run_dir or StorageSettings().cache_dir / "runs" / "digits-image"
    text = TextConditioner.default()
    trainer = Trainer(TrainConfig(steps=steps, batch_size=batch_size, seed=seed, threads=threads), run_dir,
                      text)
    if trainer.resume():
        typer.echo(f"resuming {run_dir} at step {trainer.step}")
    with tqdm(total=steps, initial=trainer.step, desc="train image", unit="step") as bar:
        def on_step(step: int, loss: float) -> None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{sum(trainer.losses[-20:]) / 20:.4f}")
        trainer.run(on_step)
    trainer.export(out, {"command": f"genloom train image --steps {steps} --batch-size {batch_size} --seed {seed}"
                                    f" --threads {threads}"})
    typer.echo(f"model written to {out}")
    if evaluate:
        from infra.models.digits.card import write_card
        from infra.models.digits.pipeline import DigitsPipeline

        result = write_card(out, DigitsPipeline.from_folder(out, text))
        typer.echo(f"conditional accuracy {result['accuracy']:.3f} (held-out captions {result['heldout_forms']:.3f})")
