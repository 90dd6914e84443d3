"""Two ways a decode step got faster, each against the default in the same run: the TextEngine alone in
this process, one thread, a float32 model (`dtype=float32` on any CPU; the default model).

- ``model call``: the step through ``model(...)`` instead of straight through the layers
  (``TextEngine(direct_decode=False)``; infra/models/llama_decode.py, same bits);
- ``head packed``: only the output head's weight packed (`GENLOOM_TEXT_FLOAT32_PACKED=false`) instead of
  every float32 Linear's also packed for products of 2 to 32 rows (infra/models/invariant.py,
  ``Float32Linear``).

The arms alternate, stream count by stream count, each over ``--steps`` decode steps of greedy chat
streams; the prefill of those streams' prompts (one step, packed together) is timed too.

    python bench/decode_step.py [--steps 30] [--rounds 3] [--streams 1 2 4 8 16]

Writes ``bench/results/decode_step.json``.
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
from infra.models.invariant import Float32Linear  # noqa: E402
from infra.models.loader import TextModelSpec, load_text_model  # noqa: E402
from workers.text.engine import TextEngine  # noqa: E402
from workers.text.sampling import SamplingParams  # noqa: E402

OUT = ROOT / "bench" / "results" / "decode_step.json"
ARMS = ("default", "model call", "head packed")
QUESTION = "Write a long story about {topic}, and describe the place, the weather and the people in detail."
TOPICS = ["a lighthouse", "a night train", "a paper boat", "the sea", "a mountain village", "an old clock",
          "a lost cat", "the first snow", "a desert road", "a market at dawn", "a broken violin", "a river journey",
          "a city garden", "a winter station", "a forgotten letter", "an orchard"]


def run(lm, streams: int, steps: int, *, direct: bool = True) -> tuple[float, list[float], dict[str, list[int]]]:
    """The prefill's time (ms), the times of ``steps`` decode steps of ``streams`` greedy streams (ms), and
    their tokens."""
    engine = TextEngine(lm.model, lm.tokenizer, max_batch_size=max(16, streams), prefix_cache_tokens=0,
                        direct_decode=direct)
    for i in range(streams):
        prompt = lm.format_chat([{"role": "user", "content": QUESTION.format(topic=TOPICS[i % len(TOPICS)])}])
        engine.add_request(f"s{i}", prompt, SamplingParams(max_tokens=steps + 2, temperature=0.0))
    tokens: dict[str, list[int]] = {}
    began = time.perf_counter()
    while engine.num_waiting():  # the prefills
        for out in engine.step():
            tokens.setdefault(out.request_id, []).extend(out.token_ids)
    prefill = 1000 * (time.perf_counter() - began)
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        outputs = engine.step()
        times.append(1000 * (time.perf_counter() - began))
        for out in outputs:
            tokens.setdefault(out.request_id, []).extend(out.token_ids)
    return prefill, times, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    args = ap.parse_args()
    torch.set_num_threads(1)
    packed, head = (load_text_model(TextModelSpec(dtype="float32", float32_packed=on)) for on in (True, False))
    arms = {"default": (packed, True), "model call": (packed, False), "head packed": (head, True)}
    result = {**machine(), "dtype": "float32", "steps": args.steps, "rounds": args.rounds,
              "packed_linears": sum(isinstance(m, Float32Linear) and m.packed is not None
                                    for m in packed.model.modules()),
              "direct": TextEngine(packed.model, packed.tokenizer)._decode_step is not None,
              "arms": {"default": "straight through the layers, every float32 Linear also packed",
                       "model call": "through model(...)", "head packed": "only the output head packed"},
              "streams": {}}
    times = {n: {arm: {"decode": [], "prefill": []} for arm in ARMS} for n in args.streams}
    same = True
    for r in range(args.rounds):
        for streams in args.streams:
            tokens = {}
            for arm in ARMS if r % 2 == 0 else ARMS[::-1]:
                lm, direct = arms[arm]
                prefill, step_times, tokens[arm] = run(lm, streams, args.steps, direct=direct)
                times[streams][arm]["decode"].append(statistics.median(step_times))
                times[streams][arm]["prefill"].append(prefill)
            same = same and all(t == tokens["default"] for t in tokens.values())
    result["same_tokens"] = same
    for streams, by_arm in times.items():
        result["streams"][str(streams)] = {
            arm: {"decode_p50_ms": statistics.median(v["decode"]), "decode_rounds_ms": v["decode"],
                  "prefill_ms": statistics.median(v["prefill"]), "prefill_rounds_ms": v["prefill"]}
            for arm, v in by_arm.items()}
        d, m, h = (result["streams"][str(streams)][a]["decode_p50_ms"] for a in ARMS)
        dp, hp = (result["streams"][str(streams)][a]["prefill_ms"] for a in ("default", "head packed"))
        print(f"{streams:>2} stream(s): decode step p50 {d:.1f} ms; through model(...) {m:.1f} ({d / m:.2f}x);"
              f" head packed only {h:.1f} ({d / h:.2f}x); prefill {dp:.0f} against {hp:.0f} ms head packed only")
    print(f"greedy tokens the same every way: {same}")
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
