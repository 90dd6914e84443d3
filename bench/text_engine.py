"""Sequential ``model.generate`` vs the continuous-batching TextEngine, from one run.

Both sides use the same model object, the same chat prompts, greedy decoding and the same
``max_tokens``. The engine runs closed-loop at 1, 4 and 16 concurrent requests: each client
sends its next request as soon as its previous one finishes. Reported per configuration:
output tokens/s (completion tokens over wall time), time to first token (p50, from
submission), and output tokens per CPU-second of this process, which other load on a shared
machine disturbs less than wall time. Writes ``bench/results/text_engine.json``.

    python bench/text_engine.py [--max-tokens 32] [--threads 1] [--requests 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers.generation.streamers import BaseStreamer  # noqa: E402

from workers.text.engine import TextEngine  # noqa: E402
from infra.models.loader import LoadedModel, TextModelSpec, load_text_model  # noqa: E402
from workers.text.sampling import SamplingParams  # noqa: E402

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers.",
    "Explain gravity to a child.",
    "Give me a tip for learning Python.",
    "What is photosynthesis?",
    "Suggest a name for a black cat.",
    "How do I boil an egg?",
    "Why is the sky blue?",
    "Translate 'good morning' into Spanish.",
    "What is a black hole?",
    "Describe a rainy day in two sentences.",
    "What are the benefits of exercise?",
    "Tell me a fun fact about octopuses.",
    "How does a bicycle stay upright?",
    "What is the difference between weather and climate?",
]

RESULTS = Path(__file__).resolve().parent / "results" / "text_engine.json"


class _FirstTokenClock(BaseStreamer):
    """Records when ``generate`` emits its first new token (its first ``put`` is the prompt)."""

    def __init__(self) -> None:
        self.puts = 0
        self.first_token_time: float | None = None

    def put(self, value: torch.Tensor) -> None:
        self.puts += 1
        if self.puts == 2 and self.first_token_time is None:
            self.first_token_time = time.perf_counter()

    def end(self) -> None:
        return None


def bench_generate(lm: LoadedModel, prompts: list[list[int]], max_tokens: int) -> dict[str, Any]:
    tokens, ttfts = 0, []
    begin, cpu_begin = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for ids in prompts:
            clock = _FirstTokenClock()
            sent = time.perf_counter()
            out = lm.model.generate(
                torch.tensor([ids], device=lm.device),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=lm.device),
                max_new_tokens=max_tokens,
                do_sample=False,
                streamer=clock,
                pad_token_id=lm.tokenizer.pad_token_id,
            )
            tokens += out.shape[1] - len(ids)
            ttfts.append((clock.first_token_time or time.perf_counter()) - sent)
    wall, cpu = time.perf_counter() - begin, time.process_time() - cpu_begin
    return _summary("sequential generate", 1, tokens, wall, cpu, ttfts)


def closed_loop(engine: TextEngine, prompts: list[list[int]], params: SamplingParams,
                concurrency: int) -> tuple[int, list[float]]:
    """Run `prompts` through `engine`, `concurrency` at a time, each stream sending its next request when
    its last one finished; (output tokens, seconds from each submission to its first token)."""
    queue = list(enumerate(prompts))
    sent: dict[str, float] = {}
    ttfts: list[float] = []
    tokens = 0

    def submit() -> None:
        i, ids = queue.pop(0)
        rid = f"req-{i}"
        sent[rid] = time.perf_counter()
        engine.add_request(rid, ids, params)

    while queue and engine.num_running() + engine.num_waiting() < concurrency:
        submit()
    while engine.has_unfinished():
        for out in engine.step():
            if out.token_ids and out.completion_tokens == len(out.token_ids):
                ttfts.append(time.perf_counter() - sent[out.request_id])
            tokens += len(out.token_ids)
            if out.finished:
                if out.error is not None:
                    raise RuntimeError(f"{out.request_id} failed: {out.error}")
                if queue:
                    submit()
    return tokens, ttfts


def bench_engine(lm: LoadedModel, prompts: list[list[int]], max_tokens: int, concurrency: int) -> dict[str, Any]:
    engine = TextEngine(lm.model, lm.tokenizer, max_batch_size=max(concurrency, 1))
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    begin, cpu_begin = time.perf_counter(), time.process_time()
    tokens, ttfts = closed_loop(engine, prompts, params, concurrency)
    wall, cpu = time.perf_counter() - begin, time.process_time() - cpu_begin
    return _summary(f"engine x{concurrency}", concurrency, tokens, wall, cpu, ttfts)


def _summary(name: str, concurrency: int, tokens: int, wall: float, cpu: float, ttfts: list[float]) -> dict[str, Any]:
    return {
        "name": name,
        "concurrency": concurrency,
        "output_tokens": tokens,
        "wall_s": round(wall, 3),
        "output_tok_per_s": round(tokens / wall, 2),
        "ttft_p50_ms": round(statistics.median(ttfts) * 1000, 1),
        # CPU seconds of this process: on a shared machine, less sensitive to other load than wall time.
        "cpu_s": round(cpu, 3),
        "output_tok_per_cpu_s": round(tokens / cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--requests", type=int, default=16, help="requests per configuration")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    lm = load_text_model(TextModelSpec(device=args.device, dtype=args.dtype))
    prompts = [
        lm.format_chat([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]) for i in range(args.requests)
    ]
    load_before = os.getloadavg()[0]
    # Warm-up: first calls allocate and pick kernels.
    bench_engine(lm, prompts[:2], 2, 2)

    rows = [bench_generate(lm, prompts, args.max_tokens)]
    rows += [bench_engine(lm, prompts, args.max_tokens, c) for c in args.concurrency]
    load_after = os.getloadavg()[0]
    baseline, cpu_baseline = rows[0]["output_tok_per_s"], rows[0]["output_tok_per_cpu_s"]
    for row in rows:
        row["speedup_vs_generate"] = round(row["output_tok_per_s"] / baseline, 2)
        row["cpu_speedup_vs_generate"] = round(row["output_tok_per_cpu_s"] / cpu_baseline, 2)

    print(f"model={lm.model_id} device={lm.device} dtype={lm.dtype} threads={args.threads} "
          f"requests={args.requests} max_tokens={args.max_tokens} "
          f"prompt_tokens_mean={statistics.mean(len(p) for p in prompts):.1f} "
          f"loadavg={load_before:.2f}->{load_after:.2f}")
    print(f"{'configuration':<22}{'out tok/s':>10}{'TTFT p50 ms':>13}{'vs generate':>13}"
          f"{'tok/cpu-s':>11}{'vs generate':>13}{'tokens':>8}{'wall s':>9}")
    for row in rows:
        print(f"{row['name']:<22}{row['output_tok_per_s']:>10}{row['ttft_p50_ms']:>13}"
              f"{row['speedup_vs_generate']:>12}x{row['output_tok_per_cpu_s']:>11}"
              f"{row['cpu_speedup_vs_generate']:>12}x{row['output_tokens']:>8}{row['wall_s']:>9}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "model": lm.model_id,
        "device": str(lm.device),
        "dtype": str(lm.dtype).removeprefix("torch."),
        "threads": args.threads,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "prompt_tokens_mean": round(statistics.mean(len(p) for p in prompts), 1),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_1m_before_after": [round(load_before, 2), round(load_after, 2)],
        "results": rows,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
