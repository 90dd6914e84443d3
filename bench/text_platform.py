"""What the platform adds to a chat completion, and genloom against `transformers serve`.

One run, same model (SmolLM2-135M-Instruct from the wheel's dequantised cache), same prompts,
greedy, one torch thread per model process:

1. overhead: the text engine called in this process (baseline) against genloom end to end
   (HTTP → gateway → Kafka → text worker → Kafka → fan-out → Redis → SSE; the default settings:
   the gateway routes jobs itself, moderation is off), one request at a time: time to first token
   and time per output token, p50, measured with plain httpx (the platform's cost, not a client
   library's) and, alternating with it, the official openai SDK. The job's own event timestamps
   split the difference into the platform's hops (before the worker starts the job, and from its
   first token to the client) and the worker's engine time.
2. serving: genloom's /v1/chat/completions against Hugging Face's `transformers serve` at 16
   concurrent streamed requests, measured by one client (the official openai SDK): output tokens/s
   (counted by re-tokenising each answer, since the two servers chunk differently) and time to
   first token p50. `transformers serve --continuous_batching` (4.57.6) fails on CPU with a
   TypeError in its generation loop, so its default mode is the baseline.

Writes ``bench/results/text_platform.json``.

    python bench/text_platform.py [--requests 24] [--max-tokens 32] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import httpx  # noqa: E402
import openai  # noqa: E402

from infra.models.settings import TextSettings  # noqa: E402
from infra.procs import free_port, stop_process, wait_for_port  # noqa: E402
from infra.redis.client import connect  # noqa: E402
from infra.redis.jobstore import JobStore  # noqa: E402
from schemas.enums import JobStatus  # noqa: E402
from schemas.events import Started, TokenDelta  # noqa: E402
from schemas.requests import scoped_job_id  # noqa: E402
from infra.stack import Stack  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "text_platform.json"
MODEL = "smollm2-135m-instruct"
#: the tenant of the benchmark's API key (its job ids are scoped by it in Redis)
TENANT = "bench"
PROMPTS = [
    "Name a colour.", "What is two plus two?", "Say hello in French.", "Name a large animal.",
    "What is the capital of Italy?", "Give me a word that rhymes with cat.", "Name a planet.",
    "What do bees make?",
]
FAST = {"GENLOOM_KAFKA_SESSION_TIMEOUT_MS": "2000", "GENLOOM_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "GENLOOM_STREAMS_SESSION_TIMEOUT_S": "2", "GENLOOM_STREAMS_HEARTBEAT_S": "0.5",
        "GENLOOM_STREAMS_REBALANCE_TIMEOUT_S": "5", "GENLOOM_WORKER_TORCH_THREADS": "1"}


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def engine_baseline(n: int, max_tokens: int) -> dict:
    """TTFT and TPOT of the engine called directly, one request at a time."""
    # torch and the model load only for this baseline: the platform's own engine runs in its worker
    import torch

    from infra.models.loader import load_text_model
    from workers.text.engine import TextEngine
    from workers.text.sampling import SamplingParams

    torch.set_num_threads(1)
    loaded = load_text_model()
    engine = TextEngine(loaded.model, loaded.tokenizer)
    ttft, tpot, tokens = [], [], 0
    for i in range(n + 1):  # the first run warms up and is not counted
        prompt = loaded.format_chat([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
        engine.add_request(f"r{i}", prompt, SamplingParams(max_tokens=max_tokens, temperature=0.0))
        start, first, count = time.perf_counter(), None, 0
        while engine.has_unfinished():
            for out in engine.step():
                if out.token_ids and first is None:
                    first = time.perf_counter()
                count += len(out.token_ids)
        end = time.perf_counter()
        if i:
            ttft.append(first - start)
            tpot.append((end - first) / max(1, count - 1))
            tokens += count
    return {"ttft_p50_ms": p50(ttft) * 1000, "tpot_p50_ms": p50(tpot) * 1000, "tokens": tokens}


_TOKENIZER = None


def model_folder() -> str:
    """The default model's dequantised folder, built first on a fresh machine (as `genloom up` does)."""
    from infra.models.loader import TextModelSpec, prepare_text_model  # heavy; only where a bench needs it

    return prepare_text_model(TextModelSpec(cache_dir=TextSettings().cache_dir))


def count_tokens(text: str) -> int:
    """Output tokens, counted the same way for both servers (their chunking differs)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from transformers import AutoTokenizer  # heavy; loaded on the first count

        _TOKENIZER = AutoTokenizer.from_pretrained(model_folder())
    return len(_TOKENIZER.encode(text, add_special_tokens=False))


async def one_stream(client: openai.AsyncOpenAI, model: str, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """(time to first content, time of the last content, output tokens)."""
    start = time.perf_counter()
    first, last, text, _ = await _sdk_stream(client, model, prompt, max_tokens)
    last = last or start
    return (first or last) - start, last, count_tokens(text)


async def _sdk_stream(client: openai.AsyncOpenAI, model: str, prompt: str, max_tokens: int):
    """(first content time, last content time, text, job id) of one streamed completion via the SDK."""
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0,
        stream=True)
    first = last = None
    text = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
            text.append(chunk.choices[0].delta.content)
    return first, last, "".join(text), chunk.id.removeprefix("chatcmpl-")


async def _http_stream(http, model: str, prompt: str, max_tokens: int):
    """The same over plain httpx: the SSE lines parsed as they come, nothing else on the client."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    first = last = job_id = None
    text = []
    async with http.stream("POST", "/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            job_id = chunk["id"]
            content = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
            if content:
                last = time.perf_counter()
                first = first or last
                text.append(content)
    return first, last, "".join(text), job_id.removeprefix("chatcmpl-")


async def sequential(url: str, key: str, model: str, n: int, max_tokens: int, redis_url: str) -> dict:
    """One request at a time, alternating two clients: plain httpx (what the platform adds, without a
    client library's own cost) and the official SDK (what an SDK user sees). The job's own event
    timestamps split each time to first token into the hops before the worker started it, the
    worker's engine time, and the hops back to the client."""
    sdk = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=300)
    http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300)
    clients = {"http": lambda p: _http_stream(http, model, p, max_tokens),
               "sdk": lambda p: _sdk_stream(sdk, model, p, max_tokens)}
    redis = connect(redis_url)
    store = JobStore(redis)
    for stream in clients.values():
        await stream(PROMPTS[0])  # warm-up
    runs: dict[str, dict[str, list[float]]] = {
        name: {"ttft": [], "tpot": [], "before": [], "engine": [], "after": []} for name in clients}
    for i in range(2 * n):
        name = "http" if i % 2 == 0 else "sdk"
        wall, start = time.time(), time.perf_counter()
        first, last, text, job_id = await clients[name](PROMPTS[(i // 2 + 1) % len(PROMPTS)])
        events = [entry.event for entry in await store.entries(scoped_job_id(TENANT, job_id))]
        started = next(e.ts for e in events if isinstance(e, Started))
        first_token = next(e.ts for e in events if isinstance(e, TokenDelta))
        run = runs[name]
        run["ttft"].append(first - start)
        run["tpot"].append((last - first) / max(1, count_tokens(text) - 1))
        run["before"].append(started - wall)
        run["engine"].append(first_token - started)
        run["after"].append((wall + (first - start)) - first_token)
    await sdk.close()
    await http.aclose()
    await redis.aclose()
    out = {}
    for name, run in runs.items():
        hops = [b + a for b, a in zip(run["before"], run["after"])]
        out[name] = {"requests": n, "ttft_p50_ms": p50(run["ttft"]) * 1000, "tpot_p50_ms": p50(run["tpot"]) * 1000,
                     "submit_to_started_p50_ms": p50(run["before"]) * 1000,
                     "worker_first_token_p50_ms": p50(run["engine"]) * 1000,
                     "token_to_client_p50_ms": p50(run["after"]) * 1000, "hops_p50_ms": p50(hops) * 1000,
                     "hops_p90_ms": statistics.quantiles(hops, n=10)[-1] * 1000}
    return out


async def concurrent(url: str, key: str, model: str, concurrency: int, max_tokens: int) -> dict:
    client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=600)
    await one_stream(client, model, PROMPTS[0], 4)  # warm-up
    start = time.perf_counter()
    results = await asyncio.gather(*(one_stream(client, model, PROMPTS[i % len(PROMPTS)], max_tokens)
                                     for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    await client.close()
    tokens = sum(r[2] for r in results)
    return {"output_tokens": tokens, "elapsed_s": elapsed, "tokens_per_s": tokens / elapsed,
            "ttft_p50_ms": p50([r[0] for r in results]) * 1000}


async def abort_after_disconnect(url: str, key: str, redis_url: str, rounds: int = 5, read: int = 4) -> dict:
    """Close a streamed completion after `read` content chunks; count the tokens the worker still made."""
    client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=300)
    redis = connect(redis_url)
    store = JobStore(redis)
    extra = []
    for _ in range(rounds):
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Tell a long story about the sea."}],
            max_tokens=200, temperature=0, stream=True)
        received = 0
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received += 1
                if received == read:
                    break
        job_id = scoped_job_id(TENANT, chunk.id.removeprefix("chatcmpl-"))  # as Redis knows it
        await stream.close()
        for _ in range(300):
            record = await store.load(job_id)
            if record is not None and record.status in (JobStatus.CANCELLED, JobStatus.COMPLETED):
                break
            await asyncio.sleep(0.1)
        generated = sum(e.event.tokens for e in await store.entries(job_id) if isinstance(e.event, TokenDelta))
        extra.append(generated - received)
    await client.close()
    await redis.aclose()
    return {"rounds": rounds, "tokens_after_disconnect": extra, "max": max(extra),
            "median": statistics.median(extra)}


def start_genloom(log_dir: Path) -> tuple[Stack, str, str]:
    port = free_port()
    key = "bench-key"
    stack = Stack(log_dir=log_dir, env={"GENLOOM_MODERATION_CLASSIFIER": "none",  # moderation off, as documented
                                        **FAST, "GENLOOM_API_KEYS": f"{key}:{TENANT}",
                                        "GENLOOM_TEXT_MAX_BATCH_SIZE": "16"})
    stack.start_backends()
    stack.add("streams", ["streams"])
    stack.add("worker-text", ["workers", "text"])
    stack.add("gateway", ["gateway", "--host", "127.0.0.1", "--port", str(port)], port=port)
    stack.start()
    return stack, f"http://127.0.0.1:{port}/v1", key


def start_transformers_serve(log_dir: Path) -> tuple[subprocess.Popen, str, str]:
    model_dir = str(TextSettings().cache_dir / "smollm2-135m-instruct")
    port = free_port()
    log = open(log_dir / "transformers-serve.log", "wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "transformers"), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--dtype", "float32", "--device", "cpu", "--force_model", model_dir],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True)
    wait_for_port(port, 180, proc)
    return proc, f"http://127.0.0.1:{port}/v1", model_dir


async def wait_ready(url: str, key: str, model: str, timeout: float = 300) -> None:
    client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)
    deadline = time.monotonic() + timeout
    while True:
        try:
            await one_stream(client, model, "hi", 2)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--skip-hf", action="store_true", help="skip the transformers serve comparison")
    args = parser.parse_args()
    log_dir = Path("/tmp/genloom-bench-logs")
    log_dir.mkdir(exist_ok=True)
    results: dict = {"machine": platform.platform(), "cpus": os.cpu_count(), "max_tokens": args.max_tokens,
                     "concurrency": args.concurrency}

    results["engine_in_process"] = engine_baseline(args.requests, args.max_tokens)
    stack, url, key = start_genloom(log_dir)
    try:
        asyncio.run(wait_ready(url, key, MODEL))
        # the same baseline again while the stack idles beside it: does an idle stack slow the engine?
        results["engine_beside_idle_stack"] = engine_baseline(max(4, args.requests // 3), args.max_tokens)
        seq = asyncio.run(sequential(url, key, MODEL, args.requests, args.max_tokens, stack.redis_url))
        results["genloom_sequential"], results["genloom_sequential_sdk"] = seq["http"], seq["sdk"]
        results["genloom_concurrent"] = asyncio.run(concurrent(url, key, MODEL, args.concurrency, args.max_tokens))
        results["abort"] = asyncio.run(abort_after_disconnect(url, key, stack.redis_url))
    finally:
        stack.stop()
    if not args.skip_hf:
        proc, hf_url, hf_model = start_transformers_serve(log_dir)
        try:
            asyncio.run(wait_ready(hf_url, "none", hf_model))
            results["transformers_serve_concurrent"] = asyncio.run(
                concurrent(hf_url, "none", hf_model, args.concurrency, args.max_tokens))
        finally:
            stop_process(proc)

    base, ours = results["engine_in_process"], results["genloom_sequential"]
    results["overhead"] = {"ttft_p50_ms": ours["ttft_p50_ms"] - base["ttft_p50_ms"],
                           "tpot_p50_ms": ours["tpot_p50_ms"] - base["tpot_p50_ms"],
                           "hops_p50_ms": ours["hops_p50_ms"], "hops_p90_ms": ours["hops_p90_ms"],
                           "worker_engine_p50_ms": ours["worker_first_token_p50_ms"] - base["ttft_p50_ms"]}
    print(f"{'':28} {'TTFT p50 ms':>12} {'TPOT p50 ms':>12}")
    print(f"{'engine in-process':28} {base['ttft_p50_ms']:12.1f} {base['tpot_p50_ms']:12.1f}")
    print(f"{'genloom end to end':28} {ours['ttft_p50_ms']:12.1f} {ours['tpot_p50_ms']:12.1f}")
    print(f"{'platform overhead':28} {results['overhead']['ttft_p50_ms']:12.1f} {results['overhead']['tpot_p50_ms']:12.1f}")
    print(f"  the platform's hops {ours['hops_p50_ms']:.1f} ms p50 ({ours['hops_p90_ms']:.1f} p90; target < 25):"
          f" submit → worker started {ours['submit_to_started_p50_ms']:.1f} ms, worker's first token"
          f" → client {ours['token_to_client_p50_ms']:.1f} ms")
    print(f"  the worker's own time to first token {ours['worker_first_token_p50_ms']:.1f} ms"
          f" (engine alone: {base['ttft_p50_ms']:.1f} ms)")
    sdk = results["genloom_sequential_sdk"]
    print(f"  through the openai SDK instead of httpx: TTFT {sdk['ttft_p50_ms']:.1f} ms, hops {sdk['hops_p50_ms']:.1f}"
          f" ms p50 ({sdk['hops_p90_ms']:.1f} p90)")
    g = results["genloom_concurrent"]
    print(f"\n{args.concurrency} concurrent streams    {'tokens/s':>10} {'TTFT p50 ms':>12}")
    print(f"{'genloom':28} {g['tokens_per_s']:10.1f} {g['ttft_p50_ms']:12.1f}")
    if "transformers_serve_concurrent" in results:
        h = results["transformers_serve_concurrent"]
        print(f"{'transformers serve':28} {h['tokens_per_s']:10.1f} {h['ttft_p50_ms']:12.1f}")
        print(f"{'ratio genloom / hf':28} {g['tokens_per_s'] / h['tokens_per_s']:10.2f}")
    a = results["abort"]
    print(f"\ntokens generated after the client closed its stream: {a['tokens_after_disconnect']}"
          " (each decode step makes one token per sequence)")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
