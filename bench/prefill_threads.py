"""A lone prompt's prefill in the TextEngine on one torch thread against more (`GENLOOM_TEXT_PREFILL_THREADS`),
the engine alone in this process: the time to the first token of a request at a quiet engine, without the
platform around it. Thread counts alternate, prompt by prompt (different prompts of the serving
benchmarks' length, the prefix cache off so every prompt is computed whole). Also records whether the
engine's start-up check accepts the larger count on this CPU (same bits in bf16, float32's rounding in
float32), and so whether the engine would switch at all.

    python bench/prefill_threads.py [--threads 2] [--prompts 12]

Writes ``bench/results/prefill_threads.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.common import machine  # noqa: E402
from infra.models.loader import TextModelSpec, load_text_model  # noqa: E402
from workers.text.engine import TextEngine, _prefill_agrees  # noqa: E402
from workers.text.sampling import SamplingParams  # noqa: E402

OUT = ROOT / "bench" / "results" / "prefill_threads.json"
#: a user turn of about the serving benchmarks' prompt length once templated (62 tokens there)
QUESTION = "In a few sentences, explain how {topic} works, what can go wrong with it, and how people fix it."
TOPICS = ["a bicycle gear", "a sourdough starter", "a heat pump", "a tide", "a vaccine", "a compiler",
          "a lighthouse", "a beehive", "a violin", "a glacier", "a printing press", "a sailboat keel"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="the larger count, against 1")
    ap.add_argument("--prompts", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(1)
    lm = load_text_model(TextModelSpec())
    engine = TextEngine(lm.model, lm.tokenizer, max_batch_size=1, prefix_cache_tokens=0)
    prompts = [lm.format_chat([{"role": "user", "content": QUESTION.format(topic=TOPICS[i % len(TOPICS)])}])
               for i in range(args.prompts)]
    exact = lm.dtype != torch.float32
    accepted = _prefill_agrees(lm.model, lm.device, 1, args.threads, exact=exact)
    times: dict[int, list[float]] = {1: [], args.threads: []}
    for i, prompt in enumerate([prompts[0], *prompts]):  # the first is a warm-up, not counted
        for threads in (1, args.threads) if i % 2 else (args.threads, 1):
            torch.set_num_threads(threads)
            engine.add_request(f"p{i}-{threads}", prompt, SamplingParams(max_tokens=1, temperature=0.0))
            began = time.perf_counter()
            engine.step()  # the prefill and its first token
            if i:
                times[threads].append(1000 * (time.perf_counter() - began))
            while engine.has_unfinished():
                engine.step()
    torch.set_num_threads(1)
    result = {**machine(), "dtype": str(lm.dtype).removeprefix("torch."), "threads": args.threads,
              "prompt_tokens": statistics.median(len(p) for p in prompts), "check_accepts": accepted,
              "prefill_ms": {str(t): {"p50": statistics.median(v), "min": min(v), "max": max(v)} for t, v in times.items()}}
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    for t, v in times.items():
        print(f"{t} thread(s): prefill p50 {statistics.median(v):.1f} ms")
    print(f"check accepts {args.threads} threads: {accepted}; wrote {OUT}")


if __name__ == "__main__":
    main()
