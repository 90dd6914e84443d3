"""Images/s of the image engine: one job at a time (baseline) vs bucketed batches (genloom).

Both modes run in this one process on the same tiny random pipeline, at 1, 4 and 8 queued
jobs of the same shape. The batched mode goes through ``BucketBatcher`` exactly as the
runner does. Prints a side-by-side table and writes ``bench/results/image_batching.json``.

    python bench/image_batching.py [--steps 4] [--size 64] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from infra.models.tiny import DEFAULT_TINY_SD_PATH  # noqa: E402
from workers.batching import BucketBatcher  # noqa: E402
from workers.image.engine import ImageBatchKey, ImageEngine, ImageJob  # noqa: E402
from workers.image.tiny import load_tiny_pipeline  # noqa: E402

QUEUE_DEPTHS = (1, 4, 8)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "image_batching.json"


def make_jobs(n: int, size: int, steps: int) -> list[ImageJob]:
    return [
        ImageJob(job_id=f"j{i}", prompt="a photo of a cat", seed=i, width=size, height=size,
                 steps=steps, guidance=5.0, scheduler="dpm-solver")
        for i in range(n)
    ]


def one_at_a_time(engine: ImageEngine, jobs: list[ImageJob]) -> float:
    start = time.perf_counter()
    for job in jobs:
        engine.generate([job])
    return time.perf_counter() - start


def bucketed(engine: ImageEngine, jobs: list[ImageJob], max_batch: int) -> float:
    start = time.perf_counter()
    batcher: BucketBatcher[ImageBatchKey, ImageJob] = BucketBatcher(max_batch, max_wait_s=0.0)
    now = time.monotonic()
    for job in jobs:
        batcher.add(job.batch_key, job, now)
    for _, batch in batcher.pop_ready(time.monotonic()):
        engine.generate(batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell; the median is kept")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--model-path", default=str(DEFAULT_TINY_SD_PATH))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    pipe, info = load_tiny_pipeline(args.model_path, device=args.device)
    engine = ImageEngine(pipe, info)
    bucketed(engine, make_jobs(args.max_batch, args.size, args.steps), args.max_batch)  # warm-up

    rows = []
    for depth in QUEUE_DEPTHS:
        jobs = make_jobs(depth, args.size, args.steps)
        seq = statistics.median(one_at_a_time(engine, jobs) for _ in range(args.repeats))
        bat = statistics.median(bucketed(engine, jobs, args.max_batch) for _ in range(args.repeats))
        rows.append({
            "queued_jobs": depth,
            "one_at_a_time_images_per_s": depth / seq,
            "batched_images_per_s": depth / bat,
            "speedup": seq / bat,
        })

    print(f"tiny random SD ({info.weights}), {args.size}x{args.size}, {args.steps} steps, "
          f"dpm-solver, {info.device}/{info.dtype}, torch threads={args.threads}, median of {args.repeats}")
    print(f"{'queued':>6}  {'one-at-a-time img/s':>20}  {'batched img/s':>14}  {'ratio':>6}")
    for r in rows:
        print(f"{r['queued_jobs']:>6}  {r['one_at_a_time_images_per_s']:>20.1f}  "
              f"{r['batched_images_per_s']:>14.1f}  {r['speedup']:>5.2f}x")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "image_batching",
        "model": {"id": info.model_id, "weights": info.weights, "class": info.pipeline_class},
        "config": {"size": args.size, "steps": args.steps, "scheduler": "dpm-solver", "threads": args.threads,
                   "repeats": args.repeats, "max_batch": args.max_batch, "device": info.device,
                   "dtype": info.dtype, "attention": info.attention},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine(), "cpu_count": os.cpu_count()},
        "target": "batch of 4 >= 1.8x images/s",
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
