"""A prefill whose products are all ``TILE_ROWS`` rows (the last padded) against pieces of at most 32 rows,
the TextEngine alone in this process: what the tile class of ``infra.models.invariant.GemmLinear`` buys a
prompt's pass on a CPU whose wider bf16 products order their sums by their size (AMX tile kernels), without
the platform around the engine.

Three prompts, each measured with tiles and without, the two alternating prompt by prompt, each in an engine
of its own (so neither warms the other's prefix cache):

- ``lone stream``: a prompt of `bench/text_peer.py` with its head already in the prefix cache, as each
  request after the first meets the engine in that benchmark (its time to first token at one stream);
- ``whole prompt``: the same prompts with the prefix cache off;
- ``short question``: a one-line question after a cached head, the fewest rows a prefill pads.

Only a layer that the load-time check gave a tile size multiplies in tiles (``tile_rows``; on a CPU
without AMX, wider products are exact and a prefill already runs in pieces of up to 256 rows): there this
records that and measures nothing. Within each way, greedy streams are the same alone and batched (the
engine's tests); across the two ways a prompt's rows have other bits, so the tokens may differ.

    python bench/prefill_tiles.py [--prompts 24]

Writes ``bench/results/prefill_tiles.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from bench.common import machine  # noqa: E402
from infra.models import invariant  # noqa: E402
from infra.models.loader import TextModelSpec, load_text_model  # noqa: E402
from text_peer import PROMPT, TOPICS  # noqa: E402
from workers.text.engine import TextEngine  # noqa: E402
from workers.text.sampling import SamplingParams  # noqa: E402

OUT = ROOT / "bench" / "results" / "prefill_tiles.json"
QUESTION = "What is the capital of country number {n}?"
KINDS = {"lone stream": (PROMPT, True), "whole prompt": (PROMPT, False), "short question": (QUESTION, True)}


def prefill(lm, engine: TextEngine, text: str, n: int) -> tuple[float, int]:
    """One prompt's prefill (ms) and the tokens it computed."""
    prompt = lm.format_chat([{"role": "user", "content": text.format(topic=TOPICS[n % len(TOPICS)], n=n)}])
    engine.add_request(f"r{n}", prompt, SamplingParams(max_tokens=1, temperature=0.0))
    engine.step()
    stats = engine.last_step
    while engine.has_unfinished():
        engine.step()
    return 1000 * stats.prefill_s, stats.prefill_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    lm = load_text_model(TextModelSpec())
    layers = [m for m in lm.model.modules() if isinstance(m, invariant.GemmLinear)]
    tiles = {m.tile_rows for m in layers}
    result = {**machine(), "dtype": str(lm.dtype).removeprefix("torch."), "tile_rows": invariant.TILE_ROWS,
              "layers": len(layers), "tiled_layers": sum(1 for m in layers if m.tile_rows),
              "prompts": args.prompts, "kinds": {}}
    if tiles == {0} or not layers:
        print(f"{lm.dtype} on this CPU: no layer multiplies a prefill in tiles (nothing to compare)")
    else:
        own = {m: m.tile_rows for m in layers}
        ways = ("tiles", "pieces")
        engines = {(kind, way): TextEngine(lm.model, lm.tokenizer, max_batch_size=4,
                                           **({} if cached else {"prefix_cache_tokens": 0}))
                   for kind, (_, cached) in KINDS.items() for way in ways}
        times: dict[tuple[str, str], list[float]] = {key: [] for key in engines}
        computed: dict[str, int] = {}
        try:
            for n in range(args.warmup + args.prompts):
                for way in ways if n % 2 == 0 else ways[::-1]:
                    for m in layers:
                        m.tile_rows = own[m] if way == "tiles" else 0
                    for kind, (text, _) in KINDS.items():
                        ms, tokens = prefill(lm, engines[(kind, way)], text, n)
                        if n >= args.warmup:
                            times[(kind, way)].append(ms)
                            computed[kind] = tokens
        finally:
            for m in layers:
                m.tile_rows = own[m]
        for kind in KINDS:
            t, p = statistics.median(times[(kind, "tiles")]), statistics.median(times[(kind, "pieces")])
            result["kinds"][kind] = {"computed_tokens": computed[kind], "tiles_p50_ms": t, "pieces_p50_ms": p,
                                     "tiles_ms": times[(kind, "tiles")], "pieces_ms": times[(kind, "pieces")]}
            print(f"{kind} ({computed[kind]} tokens computed): prefill p50 {t:.1f} ms in tiles of"
                  f" {invariant.TILE_ROWS}, {p:.1f} ms in pieces of up to {invariant.MAX_ROWS} ({t / p:.2f}x)")
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
