"""genloom against the strongest peer on this machine, each at its best: `transformers serve
--continuous-batching` from a virtual environment of its own (its transformers conflicts with the one
genloom pins) against the whole `genloom up` stack, same model folder, same client.

The protocol of issue 15: one neutral client (the official openai SDK), streaming, prompts of about
62 tokens (no two alike) and `--max-tokens` output tokens (greedy), a closed loop of `c` concurrent
streams for `--seconds` at each level of `--levels`. One server at a time: each round starts the peer
alone, measures every level and stops it, then starts `genloom up` alone, measures and stops it;
rounds repeat (`--rounds`) so the two interleave. Before each server starts, no process of an earlier
one may still run (checked by PID). genloom runs with its defaults (preparation stages, moderation
gate, every worker) but the semantic cache, which would answer repeated greedy prompts without the
engine. Each server is measured at every torch thread count of `--threads` (1 and 2 by default: on
2 cores a second thread helps a server alone and hurts one that shares the cores), the peer also at
each `--peer-dtypes` (float32 and bfloat16; genloom serves its `GENLOOM_TEXT_DTYPE=auto`, bfloat16 on a
CPU with native bf16), and each server's best run per level counts. Output tokens are counted by re-tokenising each answer with the model's tokenizer, the same
way for both servers.

The peer's environment is made on first use under `--peer-dir` (default
~/.cache/genloom/peers; pip installs torch 2.13.0 and transformers[serving] `--peer-version`);
its version is printed and recorded. Writes ``bench/results/text_peer.json``.

    python bench/text_peer.py [--rounds 1] [--threads 1 2] [--levels 1 4 16] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import openai  # noqa: E402

from idle_cpu import start_up, stop_up, wait_ready as wait_http_ready  # noqa: E402
import torch  # noqa: E402

from bench.common import cpu_model  # noqa: E402
from infra.models.loader import resolve_weights  # noqa: E402
from infra.models.settings import TextSettings  # noqa: E402
from infra.procs import free_port, stop_process, wait_for_port  # noqa: E402
from text_platform import MODEL, count_tokens, model_folder, p50  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "text_peer.json"
KEY = "gl-bench-peer"
TOPICS = ["the sea", "a mountain village", "an old clock", "a lost cat", "the first snow", "a lighthouse",
          "a desert road", "a market at dawn", "a broken violin", "a river journey", "a city garden",
          "a winter station", "a paper boat", "a forgotten letter", "a night train", "an orchard"]
#: about 64 tokens with the request's own topic and number (no two prompts alike)
PROMPT = ("You are a careful storyteller who writes plain, vivid English prose for readers of every age. "
          "Write a long story about {topic} (story number {n}). Begin at once with the first sentence, "
          "describe the place, the weather and the people in detail, and do not stop early.")


def peer_python(peer_dir: Path, version: str) -> Path:
    """The peer's interpreter, its environment made once (minutes, from PyPI and the torch file on disk)."""
    venv = peer_dir / f"transformers-{version}"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making the peer's environment in {venv} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run(pip + ["torch==2.13.0"], check=True)
        subprocess.run(pip + [f"transformers[serving]=={version}", "openai"], check=True)
    return python


def peer_version(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import transformers, torch; print(transformers.__version__,"
                           " torch.__version__)"], check=True, capture_output=True, text=True).stdout.strip()


def start_peer(python: Path, log_dir: Path, dtype: str) -> tuple[subprocess.Popen, str, str]:
    model_dir = model_folder()
    port = free_port()
    log = open(log_dir / f"transformers-serve-cb-{dtype}.log", "wb")
    proc = subprocess.Popen(
        [str(python.parent / "transformers"), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--continuous-batching", "--dtype", dtype, "--device", "cpu", model_dir],
        stdout=log, stderr=subprocess.STDOUT, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"},
        start_new_session=True)
    wait_for_port(port, 300, proc)
    return proc, f"http://127.0.0.1:{port}/v1", model_dir


def leftovers(*roots: int) -> list[int]:
    """PIDs of servers this bench started that still run (a server is measured only with none left)."""
    alive = []
    for pid in roots:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive


async def stream_once(client: openai.AsyncOpenAI, model: str, prompt: str, max_tokens: int) -> tuple[float, int]:
    """(seconds to the first content, output tokens) of one streamed completion."""
    start = time.perf_counter()
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0,
        stream=True)
    first, text = None, []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter()
            text.append(chunk.choices[0].delta.content)
    return (first or time.perf_counter()) - start, count_tokens("".join(text))


async def level(url: str, key: str, model: str, concurrency: int, seconds: float, max_tokens: int,
                tag: str) -> dict:
    """A closed loop of `concurrency` streams for `seconds`; tokens of requests that end by then."""
    client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=600)
    deadline = time.perf_counter() + seconds
    ttft: list[float] = []
    tokens = requests = 0
    counter = iter(range(10**9))

    async def loop(slot: int) -> None:
        nonlocal tokens, requests
        while time.perf_counter() < deadline:
            n = next(counter)
            prompt = PROMPT.format(topic=TOPICS[n % len(TOPICS)], n=f"{tag}-{concurrency}-{n}")
            first, got = await stream_once(client, model, prompt, max_tokens)
            ttft.append(first)
            tokens += got
            requests += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    await client.close()
    return {"concurrency": concurrency, "requests": requests, "output_tokens": tokens, "elapsed_s": round(elapsed, 2),
            "tokens_per_s": round(tokens / elapsed, 2), "ttft_p50_ms": round(p50(ttft) * 1000, 1)}


async def warm(url: str, key: str, model: str) -> None:
    """Until one short completion succeeds (models loaded, first shapes run)."""
    client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=120)
    deadline = time.monotonic() + 300
    while True:
        try:
            await stream_once(client, model, "Say hi.", 4)
            await stream_once(client, model, PROMPT.format(topic="warm-up", n=0), 8)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
    await client.close()


def measure(url: str, key: str, model: str, args: argparse.Namespace, tag: str) -> list[dict]:
    asyncio.run(warm(url, key, model))
    rows = []
    for c in args.levels:
        row = asyncio.run(level(url, key, model, c, args.seconds, args.max_tokens, tag))
        print(f"  {tag:8} c={c:<3} {row['tokens_per_s']:7.2f} tok/s  TTFT p50 {row['ttft_p50_ms']:8.1f} ms"
              f"  ({row['requests']} requests)", flush=True)
        rows.append(row)
    return rows


def best(rows: list[dict]) -> dict:
    """The row with the most output tokens/s (a server at its best thread count)."""
    return max(rows, key=lambda r: r["tokens_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="torch thread counts (OMP_NUM_THREADS) each server is measured at; each server's best counts")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--peer-version", default="5.24.0")
    ap.add_argument("--peer-dtypes", nargs="+", default=["float32", "bfloat16"],
                    help="the peer's --dtype values; its best run per level counts")
    ap.add_argument("--peer-dir", type=Path, default=Path.home() / ".cache" / "genloom" / "peers")
    ap.add_argument("--servers", nargs="+", choices=["peer", "genloom"], default=["peer", "genloom"],
                    help="which servers run (both for the comparison; one alone for an A/B of a setting, e.g. "
                         "GENLOOM_KAFKA_BUSY_POLL_MS, given in the environment)")
    ap.add_argument("--ab", metavar="NAME=VALUE",
                    help="genloom alone, each round run without then with this setting (for example "
                         "GENLOOM_KAFKA_BUSY_POLL_MS=5); writes bench/results/text_peer_ab.json")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.ab:
        if "=" not in args.ab:
            ap.error("--ab takes NAME=VALUE")
        args.servers = ["genloom"]
        if args.out == OUT:
            args.out = OUT.with_name("text_peer_ab.json")

    both = set(args.servers) == {"peer", "genloom"}
    if not both and args.out == OUT:  # one server's runs are not the comparison: kept beside it
        args.out = OUT.with_name(f"text_peer_{args.servers[0]}.json")
    python = version = None
    if "peer" in args.servers:
        python = peer_python(args.peer_dir, args.peer_version)
        version = peer_version(python)
        print(f"peer: transformers serve --continuous-batching (transformers, torch: {version})", flush=True)
    log_dir = Path(tempfile.mkdtemp(prefix="genloom-text-peer-"))
    result: dict = {"python": platform.python_version(), "cpus": os.cpu_count(), "cpu": cpu_model(),
                    "peer_versions": version,
                    "levels": args.levels, "threads": args.threads, "seconds": args.seconds,
                    "peer_dtypes": args.peer_dtypes, "genloom_dtype": resolve_weights(TextSettings().dtype, torch.device("cpu")),
                    "max_tokens": args.max_tokens,
                    "prompt_tokens": count_tokens(PROMPT.format(topic=TOPICS[0], n="r-16-0")),
                    "load_start": os.getloadavg(), "runs": [],
                    "servers": args.servers,  # the settings the run was given (an A/B names its own here)
                    "ab": args.ab,
                    "env": {k: v for k, v in os.environ.items() if k.startswith("GENLOOM_")}}
    started: list[int] = []

    def record(r: int, threads: int, server: str, dtype: str, rows: list[dict], setting: str | None = None) -> None:
        result["runs"].append({"round": r + 1, "threads": threads, "server": server, "dtype": dtype,
                               "levels": rows, "load": os.getloadavg(), "setting": setting})

    for r in range(args.rounds):
        for threads in args.threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)  # the server started next inherits it
            os.environ["GENLOOM_WORKER_TORCH_THREADS"] = str(threads)  # genloom's engine too (not its default)
            for dtype in args.peer_dtypes if "peer" in args.servers else []:
                assert not leftovers(*started), f"a server of an earlier run still runs: {leftovers(*started)}"
                proc, url, model_dir = start_peer(python, log_dir, dtype)
                started.append(proc.pid)
                try:
                    print(f"round {r + 1}, {threads} thread(s), peer {dtype}:", flush=True)
                    record(r, threads, "peer", dtype, measure(url, "unused", model_dir, args, "peer"))
                finally:
                    stop_process(proc)
            assert not leftovers(*started), "the peer did not stop"
            if "genloom" not in args.servers:
                continue
            for setting in (None, args.ab) if args.ab else (None,):
                env = {"GENLOOM_SEMANTIC_CACHE_ENABLED": "false"}
                if setting:
                    name, value = setting.split("=", 1)
                    env[name] = value
                assert not leftovers(*started), f"a server of an earlier run still runs: {leftovers(*started)}"
                up, base = start_up(Path(tempfile.mkdtemp(prefix="genloom-peer-up-")), KEY, env)
                started.append(up.pid)
                try:
                    asyncio.run(wait_http_ready(base, 300))
                    print(f"round {r + 1}, {threads} thread(s), genloom (GENLOOM_TEXT_DTYPE=auto"
                          f"{', ' + setting if setting else ''}):", flush=True)
                    record(r, threads, "genloom", "auto", measure(f"{base}/v1", KEY, MODEL, args, "genloom"), setting)
                finally:
                    stop_up(up)
    result["load_end"] = os.getloadavg()
    summary = {}
    for i, c in enumerate(args.levels if both else []):
        peer = best([run["levels"][i] | {"threads": run["threads"], "dtype": run["dtype"]}
                     for run in result["runs"] if run["server"] == "peer"])
        ours = best([run["levels"][i] | {"threads": run["threads"], "dtype": run["dtype"]}
                     for run in result["runs"] if run["server"] == "genloom"])
        s = summary[str(c)] = {
            "peer_tokens_per_s": peer["tokens_per_s"], "peer_threads": peer["threads"], "peer_dtype": peer["dtype"],
            "peer_ttft_p50_ms": peer["ttft_p50_ms"],
            "genloom_tokens_per_s": ours["tokens_per_s"], "genloom_threads": ours["threads"],
            "genloom_ttft_p50_ms": ours["ttft_p50_ms"],
            "ratio": round(ours["tokens_per_s"] / peer["tokens_per_s"], 3) if peer["tokens_per_s"] else None}
        print(f"c={c}: genloom {s['genloom_tokens_per_s']} tok/s ({s['genloom_threads']} threads) vs peer "
              f"{s['peer_tokens_per_s']} ({s['peer_threads']}, {s['peer_dtype']}): {s['ratio']}x; TTFT p50 "
              f"{s['genloom_ttft_p50_ms']} vs {s['peer_ttft_p50_ms']} ms")
    result["summary"] = summary
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(log_dir, ignore_errors=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a SIGTERM stops the servers too
    main()
