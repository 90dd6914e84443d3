"""Long-term memory quality on a set written for it (bench/data/memory_users.py): synthetic users with
facts and preferences planted over several sessions, some later contradicted, and questions whose
right answer needs one fact.

Every user message goes the way a real one does: through the real privacy analyzer (presidio, spaCy
and our recognizers; the planted facts that redaction takes away are counted), then `remember` into
the real stores (SQLite and the embedded vector index, in a temporary folder) at the time it was
said. Each question then goes through the real enrichment stage (all-MiniLM-L6-v2 vectors, vector
query, facts, scoring, prompt building), and the memories it put into the prompt are checked:

- recall@5: with top_k=5, the share of questions whose right fact (or the interaction that states
  it) is among the memories retrieved;
- right fact: with the default settings, the share of final prompts that carry the newest value;
- superseded: the share of final prompts that carry a value replaced since.

Targets: recall@5 >= 0.9, right fact >= 0.9, superseded <= 0.05. The recency and importance weights
of streams/enrichment/logic.py are chosen here: the grid below is run and printed.

    .venv/bin/python bench/memory_quality.py      # writes bench/results/memory_quality.json
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.data.memory_users import DAY, TENANT, User, users  # noqa: E402
from infra.memory import open_store  # noqa: E402
from infra.memory.base import Interaction  # noqa: E402
from infra.models.embedder import load_embedder  # noqa: E402
from infra.settings.memory import MemorySettings  # noqa: E402
from infra.vectors import open_index  # noqa: E402
from schemas import parse_request  # noqa: E402
from streams.embedding.logic import prompt_text  # noqa: E402
from streams.enrichment.logic import WEIGHTS, Weights, estimate_tokens  # noqa: E402
from streams.enrichment.stage import EnrichmentStage  # noqa: E402
from streams.memory.facts import find_facts, normalise  # noqa: E402
from streams.memory.ingest import remember  # noqa: E402
from streams.privacy.engine import SPACY_MODEL, PiiAnalyzer  # noqa: E402
from streams.privacy.logic import redact_batch  # noqa: E402
from streams.stages import Item  # noqa: E402

OUT = ROOT / "bench" / "results" / "memory_quality.json"
TARGETS = {"recall_at_5": 0.9, "right_fact": 0.9, "superseded_max": 0.05}
#: what the assistant answered (the bench measures memory, not generation)
ANSWER = "Sure, here is what I would suggest."
#: weight settings tried; the default (streams/enrichment/logic.py WEIGHTS) is one of them
GRID = [
    WEIGHTS,
    Weights(recency=0.0, importance=0.0),
    Weights(recency=0.6, importance=0.4),
    Weights(recency=0.3, importance=0.0),
    Weights(recency=0.3, importance=0.7),
    Weights(half_life_s=7 * DAY),
    Weights(floor=0.1),
    Weights(floor=0.15),
    Weights(floor=0.25),
]


def chat_request(user: str, text: str, job: str):
    return parse_request({"job_id": job, "tenant": TENANT, "user": user, "modality": "text",
                          "params": {"messages": [{"role": "user", "content": text}]}})


def image_request(user: str, text: str, job: str):
    return parse_request({"job_id": job, "tenant": TENANT, "user": user, "modality": "image",
                          "params": {"prompt": text}})


def expected(relation: str, value: str) -> tuple[str, str]:
    """The (relation, object) a stored fact has for a planted value ("not jazz" is a dislike of jazz)."""
    if relation == "likes" and value.startswith("not "):
        return "dislikes", normalise(value[4:])
    return relation, normalise(value)


def redact(people: list[User], analyzer: PiiAnalyzer) -> tuple[dict[str, str], dict]:
    """Each message's redacted text, by job id, and how many planted facts redaction took away."""
    jobs = [(f"{u.id}-{n}", u, m) for u in people for n, m in enumerate(u.messages)]
    results = redact_batch([chat_request(u.id, m.text, job) for job, u, m in jobs], analyzer.analyze)
    redacted: dict[str, str] = {}
    counts = {"planted": 0, "found_before": 0, "found_after": 0, "lost_to_redaction": []}
    for (job, _, message), result in zip(jobs, results):
        text = result.request.params.messages[0].content
        redacted[job] = text
        if message.relation is None:
            continue
        want = expected(message.relation, message.value)
        before = {(f.relation, normalise(f.object)) for f in find_facts(message.text)}
        after = {(f.relation, normalise(f.object)) for f in find_facts(text)}
        counts["planted"] += 1
        counts["found_before"] += want in before
        counts["found_after"] += want in after
        if want in before and want not in after:
            counts["lost_to_redaction"].append({"text": message.text, "redacted": text})
    return redacted, counts


async def ingest(people: list[User], redacted: dict[str, str], store, index, embed) -> float:
    began = time.perf_counter()
    for u in people:
        for n, m in enumerate(u.messages):
            job = f"{u.id}-{n}"
            await remember(store, index, embed, Interaction(id=job, tenant=TENANT, user=u.id, session=f"s{m.session}",
                                                            modality="text", prompt=redacted[job], answer=ANSWER,
                                                            created_at=m.at), now=m.at, retention_s=3650 * DAY)
    return time.perf_counter() - began


async def ask(people: list[User], store, index, embedder, settings: MemorySettings, weights: Weights) -> dict:
    """Every question through the enrichment stage; the memories and final prompts checked."""
    now = max(m.at for u in people for m in u.messages) + DAY
    stage = EnrichmentStage(store, index, None, settings, weights=weights, clock=lambda: now)
    items, asked = [], []
    for u in people:
        for n, q in enumerate(u.questions):
            job = f"{u.id}-q{n}"
            request = image_request(u.id, q.text, job) if q.relation == "image_style" else chat_request(u.id, q.text, job)
            items.append(Item(request=request, key=job.encode()))
            asked.append((u, q))
    vectors = embedder.encode([prompt_text(i.request) for i in items])
    for item, vector in zip(items, vectors):
        item.embedding = vector
    for start in range(0, len(items), 32):
        await stage.run(items[start:start + 32])
    facts = {u.id: {f.id: f for f in await store.facts(TENANT, u.id, current_only=False)} for u in people}
    right = stale = retrieved = degraded = used = tokens = 0
    misses = []
    for item, (u, q) in zip(items, asked):
        degraded += "memory" in item.degraded
        used += len(item.memories)
        tokens += sum(estimate_tokens(m.text) for m in item.memories)
        want = expected(q.relation, q.value)
        old = {expected(q.relation, v) for v in q.superseded}
        stated: set[tuple[str, str]] = set()
        for m in item.memories:
            fact = facts[u.id].get(m.id)
            if fact is not None:
                stated.add((fact.relation, normalise(fact.object)))
            else:
                stated |= {(f.relation, normalise(f.object)) for f in find_facts(m.text)}
        hit = want in stated
        retrieved += hit
        if q.relation == "image_style":  # what counts is the style in the picture's prompt
            hit = normalise(q.value) in normalise(item.request.params.prompt)
        right += hit
        stale += bool(old & stated)
        if not hit:
            misses.append({"user": u.id, "question": q.text, "want": list(want),
                           "got": [m.text for m in item.memories]})
    total = len(items)
    return {"questions": total, "recall": round(retrieved / total, 3), "right_fact": round(right / total, 3),
            "superseded": round(stale / total, 3), "degraded": degraded, "misses": misses,
            "memories_per_prompt": round(used / total, 2), "memory_tokens_per_prompt": round(tokens / total, 1)}


async def baseline(people: list[User], store, index, embedder, k: int = 5) -> dict:
    """Plain retrieval for comparison: the k nearest of all the user's vectors by cosine alone, superseded
    facts and the interactions that stated them included (what a vector store alone gives)."""
    asked = [(u, q) for u in people for q in u.questions if q.relation != "image_style"]
    vectors = embedder.encode([q.text for _, q in asked])
    found = stale = 0
    for (u, q), vector in zip(asked, vectors):
        hits = await index.query(TENANT, u.id, vector, k)
        facts = {f.id: f for f in await store.get_facts(TENANT, u.id, [h.id for h in hits if h.kind == "fact"])}
        said = await store.get_interactions(TENANT, u.id, [h.id for h in hits if h.kind == "interaction"])
        stated = {(f.relation, normalise(f.object)) for f in facts.values()}
        stated |= {(f.relation, normalise(f.object)) for i in said for f in find_facts(i.prompt)}
        found += expected(q.relation, q.value) in stated
        stale += bool({expected(q.relation, v) for v in q.superseded} & stated)
    return {"questions": len(asked), "recall_at_5": round(found / len(asked), 3),
            "superseded": round(stale / len(asked), 3)}


async def run() -> dict:
    people = users()
    began = time.perf_counter()
    analyzer = PiiAnalyzer()
    redacted, privacy = redact(people, analyzer)
    redact_s = time.perf_counter() - began
    embedder = load_embedder()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        base = MemorySettings(sqlite_path=str(home / "memory.db"), vector_path=str(home / "vectors"),
                              timeout_ms=60_000)
        store = open_store(base, home)
        index = open_index(base, home, embedder.dims)
        await store.start()
        await index.start()
        try:
            ingest_s = await ingest(people, redacted, store, index, embedder.encode)
            plain = await baseline(people, store, index, embedder)
            grid = []
            for w in GRID:
                at5 = await ask(people, store, index, embedder,
                                MemorySettings(**{**base.model_dump(), "top_k": 5}), w)
                full = await ask(people, store, index, embedder, base, w)
                grid.append({"weights": w.__dict__, "recall_at_5": at5["recall"], "right_fact": full["right_fact"],
                             "superseded": full["superseded"], "degraded": at5["degraded"] + full["degraded"],
                             "memories_per_prompt": full["memories_per_prompt"],
                             "memory_tokens_per_prompt": full["memory_tokens_per_prompt"],
                             "misses": full["misses"]})
        finally:
            await index.close()
            await store.close()
    chosen = grid[0]
    return {
        "users": len(people), "messages": sum(len(u.messages) for u in people),
        "planted": privacy["planted"], "questions": sum(len(u.questions) for u in people),
        "questions_after_contradiction": sum(1 for u in people for q in u.questions if q.superseded),
        "privacy": {"model": f"presidio-analyzer + {SPACY_MODEL} + genloom recognizers",
                    "finder_recall_on_planted": round(privacy["found_before"] / privacy["planted"], 3),
                    "lost_to_redaction": len(privacy["lost_to_redaction"]),
                    "lost_share": round(len(privacy["lost_to_redaction"]) / max(1, privacy["found_before"]), 3),
                    "lost_examples": privacy["lost_to_redaction"][:10], "redact_s": round(redact_s, 1)},
        "ingest_s": round(ingest_s, 1),
        "settings": {"top_k": MemorySettings().top_k, "budget_tokens": MemorySettings().budget_tokens},
        "weights": chosen["weights"], "recall_at_5": chosen["recall_at_5"], "right_fact": chosen["right_fact"],
        "superseded": chosen["superseded"], "targets": TARGETS,
        "baseline": plain, "memories_per_prompt": chosen["memories_per_prompt"],
        "memory_tokens_per_prompt": chosen["memory_tokens_per_prompt"],
        "grid": [{k: v for k, v in g.items() if k != "misses"} for g in grid],
        "misses": chosen["misses"][:20],
    }


def main() -> None:
    result = asyncio.run(run())
    p = result["privacy"]
    print(f"{result['users']} users, {result['messages']} messages, {result['planted']} planted facts, "
          f"{result['questions']} questions ({result['questions_after_contradiction']} after a contradiction)")
    print(f"fact finder found {p['finder_recall_on_planted']:.3f} of planted statements; redaction took away "
          f"{p['lost_to_redaction']} ({p['lost_share']:.3f}); ingest {result['ingest_s']} s")
    b = result["baseline"]
    print(f"baseline (top-5 cosine over every stored vector): recall@5 {b['recall_at_5']}, superseded {b['superseded']}"
          f" ({b['questions']} chat questions)")
    print(f"{'half-life d':>11} {'recency':>8} {'importance':>10} {'floor':>6} {'recall@5':>9} {'right':>6} "
          f"{'superseded':>10} {'memories':>8} {'tokens':>6}")
    for g in result["grid"]:
        w = g["weights"]
        print(f"{w['half_life_s'] / DAY:11.0f} {w['recency']:8} {w['importance']:10} {w['floor']:6} "
              f"{g['recall_at_5']:9} {g['right_fact']:6} {g['superseded']:10} {g['memories_per_prompt']:8} "
              f"{g['memory_tokens_per_prompt']:6}")
    print(f"chosen (streams/enrichment/logic.py WEIGHTS): recall@5 {result['recall_at_5']}, right fact "
          f"{result['right_fact']}, superseded {result['superseded']} (targets >= 0.9, >= 0.9, <= 0.05)")
    for m in result["misses"][:10]:
        print(f"  miss {m['user']}: {m['question']!r} wants {m['want']} got {m['got']}")
    for ex in p["lost_examples"]:
        print(f"  redaction took a fact: {ex['text']!r} -> {ex['redacted']!r}")
    OUT.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
