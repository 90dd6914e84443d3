"""The built-in text engine against transformers' continuous batching on a GPU (issue 15, item 6).

One side per process, because the two sides need different transformers versions: genloom's engine
runs on the version genloom pins (4.57), the peer on the newest one the machine has (its continuous
batching with paged attention, CUDA graphs chosen by itself, prefix sharing: its defaults are its
best configuration). Both load the same model folder, take the same prompts (``--prompt-tokens``
tokens each, a chat-formatted question padded to that length) and generate exactly
``--max-tokens`` tokens per request (EOS disabled on both sides, so every request costs the same).
Each concurrency level runs closed loop: every stream sends its next request when its last one
finishes, ``--rounds`` requests per stream. Reported per dtype and level: output tokens/s, TTFT p50
(submission to first token) and peak GPU memory; a sequential ``model.generate`` row is the
baseline measured in the same run on genloom's side.

A folder without weights (config and tokenizer only) is filled with seeded random weights of the
model's architecture (``--random-weights``): the throughput of a dense model does not depend on
the values of its weights once output lengths are fixed, which they are here. That is what lets the
check run on a machine that a 98 MB model cannot be carried to.

    python bench/text_gpu.py --side genloom --model DIR [--random-weights] --output a.json
    python bench/text_gpu.py --side peer --model DIR [--random-weights] --output b.json
    python bench/text_gpu.py --merge a.json b.json [--output bench/results/text_gpu.json]   # the table

On the lent GPU machine (nothing can be installed there: genloom's pinned transformers, tokenizers,
huggingface_hub and pydantic travel as wheels, the model's config and tokenizer as a folder; the
peer uses the transformers the machine has): `.gpu/run.sh` as written by the note of the session
that prepared it, or by hand, the two sides one after the other, then ``--merge``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

QUESTIONS = [
    "What is the capital of France?", "Write a haiku about the sea.", "List three prime numbers.",
    "Explain gravity to a child.", "Give me a tip for learning Python.", "What is photosynthesis?",
    "Suggest a name for a black cat.", "How do I boil an egg?", "Why is the sky blue?",
    "Translate 'good morning' into Spanish.", "What is a black hole?", "Describe a rainy day.",
    "What are the benefits of exercise?", "Tell me a fun fact about octopuses.",
    "How does a bicycle stay upright?", "What is the difference between weather and climate?",
]
FILLER = " Please answer carefully, step by step, and keep it short."


def prompts(tokenizer: Any, n: int, length: int) -> list[list[int]]:
    """``n`` chat prompts of exactly ``length`` tokens (the question padded, the assistant turn kept)."""
    out = []
    tail = tokenizer("<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    for i in range(n):
        question = f"{QUESTIONS[i % len(QUESTIONS)]} (#{i})"
        while True:
            text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                 add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) >= length:
                break
            question += FILLER
        out.append(ids[: length - len(tail)] + tail if len(ids) > length else ids)
    return out


def load(folder: str, dtype_name: str, random_weights: bool, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, dtype_name)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if random_weights:
        config = AutoConfig.from_pretrained(folder)
        config._attn_implementation = "sdpa"
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config)
        model = model.to(dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa").to(device)
    return model.eval(), tokenizer


def _row(side: str, dtype: str, concurrency: int, tokens: int, wall: float, ttfts: list[float]) -> dict[str, Any]:
    import torch

    return {
        "side": side, "dtype": dtype, "concurrency": concurrency, "output_tokens": tokens,
        "wall_s": round(wall, 3), "output_tok_per_s": round(tokens / wall, 1),
        "ttft_p50_ms": round(statistics.median(ttfts) * 1000, 1),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None,
    }


# -- genloom's side ---------------------------------------------------------------------------------

def run_generate(model: Any, ids: list[list[int]], max_tokens: int, dtype: str) -> dict[str, Any]:
    """Sequential ``model.generate``, batch 1, EOS off: the baseline."""
    import torch

    tokens, ttfts, begin = 0, [], time.perf_counter()
    with torch.inference_mode():
        for prompt in ids:
            sent = time.perf_counter()
            x = torch.tensor([prompt], device=model.device)
            model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=1, min_new_tokens=1,
                           do_sample=False, pad_token_id=0)
            ttfts.append(time.perf_counter() - sent)  # a one-token generate: its prefill and first token
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_tokens,
                                 min_new_tokens=max_tokens, do_sample=False, pad_token_id=0)
            tokens += out.shape[1] - len(prompt)
    return _row("generate (sequential)", dtype, 1, tokens, time.perf_counter() - begin - sum(ttfts), ttfts)


def run_genloom(model: Any, tokenizer: Any, ids: list[list[int]], max_tokens: int, concurrency: int,
                dtype: str) -> dict[str, Any]:
    import torch

    from text_engine import closed_loop  # bench/ is on the path: this script's folder
    from workers.text.engine import TextEngine
    from workers.text.sampling import SamplingParams

    torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
    engine = TextEngine(model, tokenizer, max_batch_size=concurrency,
                        max_batch_tokens=max(8192, concurrency * (len(ids[0]) + max_tokens)))
    engine.eos_token_ids = frozenset()  # every request generates max_tokens
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    begin = time.perf_counter()
    tokens, ttfts = closed_loop(engine, ids, params, concurrency)
    return _row("genloom engine", dtype, concurrency, tokens, time.perf_counter() - begin, ttfts)


# -- the peer's side --------------------------------------------------------------------------------

def peer_manager(model: Any, max_tokens: int, prompt_tokens: int, requests: int) -> Any:
    """The peer's continuous-batching manager, sized for the largest level, as a server keeps one."""
    from transformers import GenerationConfig
    from transformers.generation.continuous_batching.utils import WorkloadHints

    config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, eos_token_id=-1, pad_token_id=0)
    hints = WorkloadHints(max_prompt_length=prompt_tokens, max_generated_length=max_tokens, num_requests=requests)
    return model.continuous_batching_context_manager(generation_config=config, workload_hints=hints,
                                                     block=True, timeout=30)


def run_peer(manager: Any, ids: list[list[int]], max_tokens: int, concurrency: int, dtype: str) -> dict[str, Any]:
    import torch

    torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
    queue, sent, ttfts, tokens, done = list(enumerate(ids)), {}, [], 0, 0
    tag = f"c{concurrency}-"

    def submit() -> None:
        i, prompt = queue.pop(0)
        sent[f"{tag}{i}"] = time.perf_counter()
        manager.add_request(prompt, request_id=f"{tag}{i}", max_new_tokens=max_tokens, record_timestamps=True,
                            eos_token_id=-1)

    begin = time.perf_counter()
    for _ in range(min(concurrency, len(queue))):
        submit()
    while done < len(ids):
        result = manager.get_result(timeout=60)
        if result is None:
            raise RuntimeError("the peer produced no result in 60 s")
        if not result.is_finished():
            continue
        if result.error:
            raise RuntimeError(f"{result.request_id}: {result.error}")
        done += 1
        tokens += len(result.generated_tokens)
        ttfts.append(result.timestamps[0] - sent[result.request_id])
        if queue:
            submit()
    return _row("transformers continuous batching", dtype, concurrency, tokens, time.perf_counter() - begin, ttfts)


# -- driver -----------------------------------------------------------------------------------------

def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "side": args.side, "transformers": transformers.__version__, "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor(),
        "model": args.model, "random_weights": args.random_weights, "prompt_tokens": args.prompt_tokens,
        "max_tokens": args.max_tokens, "rounds": args.rounds, "rows": [], "errors": [],
    }
    for dtype in args.dtypes:
        model, tokenizer = load(args.model, dtype, args.random_weights, args.device)
        ids = prompts(tokenizer, max(args.concurrency) * args.rounds, args.prompt_tokens)
        # warm-up: kernels picked, allocator primed (the peer warms its graphs inside its manager)
        runs: list[tuple[str, Any]] = []
        if args.side == "genloom":
            runs.append(("warm-up", lambda: run_genloom(model, tokenizer, ids[:4], 4, 4, dtype)))
            runs.append(("generate", lambda: run_generate(model, ids[: args.generate_requests], args.max_tokens, dtype)))
            runs += [(f"x{c}", lambda c=c: run_genloom(model, tokenizer, ids[: c * args.rounds], args.max_tokens, c, dtype))
                     for c in args.concurrency]
        else:
            context = peer_manager(model, args.max_tokens, args.prompt_tokens, len(ids))
            manager = context.__enter__()  # warms its CUDA graphs up, then starts its loop
            runs += [(f"x{c}", lambda c=c: run_peer(manager, ids[: c * args.rounds], args.max_tokens, c, dtype))
                     for c in args.concurrency]
        for name, run in runs:
            try:
                row = run()
            except Exception as exc:  # one failing level must not cost the others (device time is scarce)
                traceback.print_exc()
                report["errors"].append(f"{args.side} {dtype} {name}: {type(exc).__name__}: {exc}")
                continue
            if name != "warm-up":
                report["rows"].append(row)
                print(json.dumps(row), flush=True)
        if args.side == "peer":
            context.__exit__(None, None, None)
        model = None  # the weights go before the next dtype loads
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return report


def merge(paths: list[Path]) -> dict[str, Any]:
    """The sides' reports as one record, the form bench/report.py renders (bench/results/text_gpu.json)."""
    return {"reports": [json.loads(p.read_text()) for p in paths]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", choices=["genloom", "peer"])
    parser.add_argument("--model", help="model folder (config and tokenizer; weights unless --random-weights)")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="requests per stream at each level")
    parser.add_argument("--generate-requests", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--merge", type=Path, nargs="+", help="print the table of these reports")
    args = parser.parse_args()
    if args.merge:
        from report import text_gpu  # bench/ is on the path: this script's folder

        record = merge(args.merge)
        print("\n".join(text_gpu(record)))
        if args.output:
            args.output.write_text(json.dumps(record, indent=2) + "\n")
        return
    if not (args.side and args.model):
        parser.error("--side and --model are needed to measure")
    report = measure(args)
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    sys.exit(1 if report["errors"] and not report["rows"] else 0)


if __name__ == "__main__":
    main()
