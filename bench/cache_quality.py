"""Semantic cache quality: hit rate on paraphrases and false-hit rate on near misses, per threshold.

The prompts (bench/data/cache_paraphrases.json, written for this benchmark) are embedded as the
embedding stage embeds a one-turn chat, with the real all-MiniLM-L6-v2. Two views:

- pairs: a paraphrase pair hits when its two prompts' cosine similarity reaches the threshold; a
  near-miss pair (another entity, number, unit, direction, negation) is a false hit when it does.
- one scope: the first prompt of every pair is stored in one scope of the real in-process tier
  (`LocalTier`) and each second prompt is looked up, as the cache stage would. A paraphrase is
  answered right when its own partner comes back; a false hit is any answer to a near miss, or a
  paraphrase answered with another prompt's answer.

Both views are shown for cosine similarity alone and for the cache as it runs: cosine similarity
inside a scope that also holds the prompt's key terms (numbers, negations, names, quoted text; see
streams/cache/logic.py), so prompts whose key terms differ never compare.

The chosen threshold is the lowest one (so the most hits) whose false-hit rate is at most
`--max-false` in both views; it is the default of GENLOOM_SEMANTIC_CACHE_THRESHOLD.

    python bench/cache_quality.py [--max-false 0.03]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from infra.models.embedder import load_embedder
from schemas import parse_request
from streams.cache.logic import Answer, LocalTier, key_terms
from streams.embedding.logic import chat_text
from schemas.enums import FinishReason
from schemas.events import ModelInfo

DATA = Path(__file__).parent / "data" / "cache_paraphrases.json"
RESULTS = Path(__file__).parent / "results" / "cache_quality.json"
THRESHOLDS = [round(0.70 + 0.01 * i, 2) for i in range(30)]


def texts(prompts: list[str]) -> list[str]:
    """What the embedding stage embeds for a one-turn chat of each prompt."""
    return [chat_text(parse_request({"modality": "text", "params": {"messages": [{"role": "user", "content": p}]}}))
            for p in prompts]


def scope(text: str, with_terms: bool) -> str:
    return "|".join(key_terms(text)) if with_terms else "all"


def one_scope(first: list[tuple[str, np.ndarray]], same_q: list[tuple[str, np.ndarray]],
              near_q: list[tuple[str, np.ndarray]], threshold: float, with_terms: bool) -> dict:
    tier = LocalTier(max_entries=10_000, max_bytes=1 << 30, ttl_s=3600)
    model = ModelInfo(id="m", device="cpu", dtype="float32")
    for i, (text, vector) in enumerate(first):
        tier.put(scope(text, with_terms), vector, Answer(f"job-{i}", "", FinishReason.STOP, model, 0.0), 0.0)
    right = wrong = near_hits = 0
    for i, (text, query) in enumerate(same_q):
        hit = tier.lookup(scope(text, with_terms), query, threshold, 0.0)
        if hit is not None:
            right += hit.answer.job_id == f"job-{i}"
            wrong += hit.answer.job_id != f"job-{i}"
    for text, query in near_q:
        near_hits += tier.lookup(scope(text, with_terms), query, threshold, 0.0) is not None
    return {"hit_rate": right / len(same_q), "wrong_answer_rate": wrong / len(same_q),
            "false_hit_rate": (near_hits + wrong) / (len(near_q) + len(same_q))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-false", type=float, default=0.03, help="Largest false-hit rate accepted.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    data = json.loads(DATA.read_text())
    same, near = data["same"], data["near_miss"]
    started = time.perf_counter()
    embedder = load_embedder()
    ta, tb = texts([a for a, _ in same]), texts([b for _, b in same])
    na, nb = texts([a for a, _ in near]), texts([b for _, b in near])
    same_a, same_b, near_a, near_b = (embedder.encode(t) for t in (ta, tb, na, nb))
    same_sim = np.einsum("ij,ij->i", same_a, same_b)
    near_sim = np.einsum("ij,ij->i", near_a, near_b)
    same_terms = np.array([key_terms(a) == key_terms(b) for a, b in zip(ta, tb)])
    near_terms = np.array([key_terms(a) == key_terms(b) for a, b in zip(na, nb)])
    # the stored prompts of the one-scope view: every pair's first prompt, once, paraphrases first
    firsts: dict[str, np.ndarray] = {}
    for text, v in [*zip(ta, same_a), *zip(na, near_a)]:
        firsts.setdefault(text, v)
    stored = list(firsts.items())
    same_q, near_q = list(zip(tb, same_b)), list(zip(nb, near_b))
    rows = {"cosine": [], "cosine_and_terms": []}
    for t in THRESHOLDS:
        for view, with_terms in (("cosine", False), ("cosine_and_terms", True)):
            same_ok = (same_sim >= t) & (same_terms if with_terms else True)
            near_ok = (near_sim >= t) & (near_terms if with_terms else True)
            scoped = one_scope(stored, same_q, near_q, t, with_terms)
            rows[view].append({
                "threshold": t, "pair_hit_rate": float(np.mean(same_ok)), "pair_false_hit_rate": float(np.mean(near_ok)),
                "scope_hit_rate": scoped["hit_rate"], "scope_wrong_answer_rate": scoped["wrong_answer_rate"],
                "scope_false_hit_rate": scoped["false_hit_rate"]})

    def choose(view: list[dict]) -> float | None:
        ok = [r for r in view if r["pair_false_hit_rate"] <= args.max_false
              and r["scope_false_hit_rate"] <= args.max_false]
        return ok[0]["threshold"] if ok else None

    chosen = choose(rows["cosine_and_terms"])
    print(f"{len(same)} paraphrase pairs, {len(near)} near-miss pairs, all-MiniLM-L6-v2 "
          f"({time.perf_counter() - started:.1f} s)")
    print(f"similarity of paraphrases: median {np.median(same_sim):.3f}, min {same_sim.min():.3f}; "
          f"of near misses: median {np.median(near_sim):.3f}, max {near_sim.max():.3f}")
    print(f"key terms tell {np.mean(~near_terms):.0%} of near misses apart and"
          f" {np.mean(~same_terms):.0%} of paraphrases (those then miss: safe)")
    for view, title in (("cosine", "cosine similarity alone"), ("cosine_and_terms", "as the cache runs: cosine"
                                                                                        " within key-term scopes")):
        print(f"\n{title}\nthreshold  pair hit  pair false  scope hit  scope wrong  scope false")
        for r in rows[view]:
            mark = "  <- chosen" if view == "cosine_and_terms" and r["threshold"] == chosen else ""
            print(f"  {r['threshold']:.2f}     {r['pair_hit_rate']:6.1%}    {r['pair_false_hit_rate']:6.1%}     "
                  f"{r['scope_hit_rate']:6.1%}     {r['scope_wrong_answer_rate']:6.1%}      "
                  f"{r['scope_false_hit_rate']:6.1%}{mark}")
    passing = [(s, p) for s, p, same_t in zip(near_sim.tolist(), near, near_terms) if same_t]
    worst = sorted(passing, reverse=True)[:5]
    args.out.write_text(json.dumps({
        "model": "sentence-transformers/all-MiniLM-L6-v2", "pairs_same": len(same), "pairs_near_miss": len(near),
        "max_false_hit_rate": args.max_false, "chosen_threshold": chosen,
        "same_similarity_median": float(np.median(same_sim)), "same_similarity_min": float(same_sim.min()),
        "near_similarity_median": float(np.median(near_sim)), "near_similarity_max": float(near_sim.max()),
        "terms_separate_near_misses": float(np.mean(~near_terms)),
        "terms_separate_paraphrases": float(np.mean(~same_terms)),
        "closest_near_misses_with_same_terms": [{"similarity": round(s, 3), "a": p[0], "b": p[1]} for s, p in worst],
        "cosine_only_threshold": choose(rows["cosine"]), "rows": rows, "machine": platform.machine(), "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
    }, indent=2) + "\n")
    print(f"\nchosen threshold {chosen} (the lowest with a false-hit rate <= {args.max_false:.0%} in both views;"
          f" cosine alone: {choose(rows['cosine'])}); wrote {args.out}")


if __name__ == "__main__":
    main()
