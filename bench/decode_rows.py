"""A decode step of one to three streams with the bf16 products of one or two rows padded to
``MIN_ROWS`` rows (4, the default) against 2, the TextEngine alone in this process: what padding a lone
stream's row to four instead of two buys, without the platform around the engine. The two settings alternate, stream count by
stream count (``infra.models.invariant.MIN_ROWS`` is read by every product, so it is switched in place),
each over ``--steps`` decode steps of chat prompts; the greedy tokens of both must be the same (every row
of a 2-to-32-row product has the same bits). Only a model made batch-invariant (bf16 on a CPU with native
bf16) pads at all; on another CPU this records that and measures nothing.

    python bench/decode_rows.py [--steps 40] [--rounds 3]

Writes ``bench/results/decode_rows.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.common import machine  # noqa: E402
from bench.decode_step import run  # noqa: E402
from infra.models import invariant  # noqa: E402
from infra.models.loader import TextModelSpec, load_text_model  # noqa: E402

OUT = ROOT / "bench" / "results" / "decode_rows.json"


def decode(lm, streams: int, steps: int) -> tuple[list[float], dict[str, list[int]]]:
    """Step times (ms) of ``steps`` decode steps of ``streams`` greedy streams, and their tokens."""
    _, times, tokens = run(lm, streams, steps)
    return times, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    lm = load_text_model(TextModelSpec())
    pads = any(isinstance(m, invariant.GemmLinear) for m in lm.model.modules())
    default, pad_below = invariant.MIN_ROWS, invariant.PAD_BELOW
    result = {**machine(), "dtype": str(lm.dtype).removeprefix("torch."), "pads": pads, "steps": args.steps,
              "rounds": args.rounds, "min_rows": [default, 2], "streams": {}}
    if pads:
        times: dict[int, dict[int, list[float]]] = {n: {default: [], 2: []} for n in (1, 2, 3)}
        same = True
        try:
            for r in range(args.rounds):
                for streams in (1, 2, 3):
                    tokens = {}
                    for rows in (default, 2) if r % 2 == 0 else (2, default):
                        # 2: a lone row padded to two, as before (PAD_BELOW 2); the default pads one or two rows
                        invariant.MIN_ROWS, invariant.PAD_BELOW = rows, pad_below if rows == default else 2
                        step_times, tokens[rows] = decode(lm, streams, args.steps)
                        times[streams][rows].append(statistics.median(step_times))
                    same = same and tokens[default] == tokens[2]
        finally:
            invariant.MIN_ROWS, invariant.PAD_BELOW = default, pad_below
        result["same_tokens"] = same
        for streams, by_rows in times.items():
            result["streams"][str(streams)] = {str(rows): {"p50_ms": statistics.median(v), "rounds_ms": v}
                                               for rows, v in by_rows.items()}
            print(f"{streams} stream(s): decode step p50 {statistics.median(by_rows[default]):.1f} ms with"
                  f" {default} rows, {statistics.median(by_rows[2]):.1f} ms with 2")
        print(f"greedy tokens the same: {same}")
    else:
        print(f"{lm.dtype} on this CPU: the products are not padded (nothing to compare)")
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
