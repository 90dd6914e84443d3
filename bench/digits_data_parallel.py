"""Data-parallel training of the digit image model: 1 process x 2 threads (baseline) against
2 processes x 1 thread (torch.distributed, gloo), the same seeded run of the same steps.

Reports samples/s, time until the loss (mean of the last 20 steps) first reaches a target, and how
far apart the two loss curves are (data-parallel training takes the same steps, so they should
agree to float rounding). Writes ``bench/results/digits_data_parallel.json``.

    python bench/digits_data_parallel.py [--steps 150] [--target 0.08]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.models.digits.distributed import run_data_parallel  # noqa: E402
from infra.models.digits.model import TextConditioner  # noqa: E402
from infra.models.digits.train import Trainer, TrainConfig  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "digits_data_parallel.json"
WINDOW = 20  #: steps averaged for the time-to-target loss


def train(rank: int, world: int, out_dir: Path, steps: int, threads: int) -> None:
    config = TrainConfig(steps=steps, threads=threads, checkpoint_every=steps)
    trainer = Trainer(config, out_dir, TextConditioner.default(), rank=rank, world=world)
    times: list[float] = []
    start = time.perf_counter()
    trainer.run(lambda step, loss: times.append(time.perf_counter() - start))
    if rank == 0:
        (out_dir / "timeline.json").write_text(json.dumps({"times": times, "losses": trainer.losses}))


def summarise(name: str, folder: Path, batch: int, target: float) -> dict:
    run = json.loads((folder / "timeline.json").read_text())
    times, losses = run["times"], run["losses"]
    reached = next((times[i] for i in range(WINDOW - 1, len(losses))
                    if sum(losses[i - WINDOW + 1:i + 1]) / WINDOW <= target), None)
    return {"name": name, "samples_per_s": len(times) * batch / times[-1], "seconds": times[-1],
            "time_to_target_s": reached, "final_loss": sum(losses[-WINDOW:]) / WINDOW, "losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--target", type=float, default=0.08)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    batch = TrainConfig().batch_size
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        one, two = Path(scratch) / "one", Path(scratch) / "two"
        train(0, 1, one, args.steps, threads=2)
        results.append(summarise("1 process x 2 threads (baseline)", one, batch, args.target))
        run_data_parallel(2, train, two, args.steps, 1)
        results.append(summarise("2 processes x 1 thread (gloo data-parallel)", two, batch, args.target))
    gap = max(abs(a - b) for a, b in zip(results[0]["losses"], results[1]["losses"]))
    for r in results:
        print(f"{r['name']:45s} {r['samples_per_s']:7.1f} samples/s  target {args.target} after "
              f"{r['time_to_target_s'] or float('nan'):6.1f} s  final loss {r['final_loss']:.4f}")
    print(f"largest per-step loss difference between the two runs: {gap:.2e}")
    out = {"steps": args.steps, "batch_size": batch, "target_loss": args.target, "window": WINDOW,
           "max_loss_gap": gap, "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
           "results": [{k: v for k, v in r.items() if k != "losses"} for r in results]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
