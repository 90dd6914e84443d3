"""What the enrichment stage costs: the latency it adds per job at 1k and 100k stored interactions, and
jobs/s through the chained preparation stages with it on against the same chain without it, in one run.

The stores are the real embedded defaults (SqliteMemoryStore and the embedded vector index in a temp
folder), filled once, then reopened the way a streams process opens them (`MemoryBackends`), and the
stage is the one the chain builds (`build_stages`, over those backends and a real redis-server for the
session turns). One tenant holds:

- a user with `--small` interactions and a user with `--big` (plus `--facts-per-1k` facts per 1k
  interactions, a profile, and a live session's recent turns in Redis), the two measured users;
- `--spread-users` other users sharing another `--big` interactions (the realistic shape of a tenant:
  many users with short histories), measured too, a random one per job;

and another tenant's users sit beside them. Filling is fast because it skips the model: a few hundred
generated sentences (questions, and statements the fact finder turns into facts) are embedded with
all-MiniLM-L6-v2 once, and every stored vector is one of them with noise added (cosine about 0.85 to
it), so real embeddings of new questions about the same topics score as they would against a real
history. Vectors go in through the index's batch path (one upsert per user); store rows through the
store's own calls, 64 in flight (the store has no batch write). Facts replace each other as the writer's
would (streams/memory/facts.py `supersedes`), superseded ones kept.

1. Latency: `run_chain([enrichment])` on batches of 1 and of 8 chat jobs whose vectors the embedding
   stage would have set (real embeddings of generated questions): the stage's milliseconds per batch,
   p50 and p99. Target: under 20 ms p50 added at 100k.
2. Where the time goes at `--big`: each read the retriever makes, alone.
3. Throughput: `run_chain` over privacy, embedding, enrichment, cache as built by `build_stages`, and
   over the same stage objects without enrichment, alternating, every prompt new (the embedding stage's
   memo and the cache miss, as with new questions): jobs/s and the ratio.

    PYTHONPATH=. .venv/bin/python bench/enrichment.py      # writes bench/results/enrichment.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from infra.memory.base import Fact, Interaction, Profile  # noqa: E402
from infra.memory.sqlite import SqliteMemoryStore  # noqa: E402
from infra.models.embedder import load_embedder  # noqa: E402
from infra.redis.server import LocalRedis  # noqa: E402
from infra.redis.sessions import Turn  # noqa: E402
from infra.settings.memory import MemorySettings  # noqa: E402
from infra.settings.streams import CacheSettings, EmbeddingSettings, PrivacySettings  # noqa: E402
from infra.vectors.base import VectorRecord  # noqa: E402
from infra.vectors.embedded import EmbeddedVectorIndex  # noqa: E402
from schemas import parse_request  # noqa: E402
from streams.cache.agents import build_cache  # noqa: E402
from streams.enrichment.engine import HITS_PER_SLOT  # noqa: E402
from streams.memory.backends import MemoryBackends  # noqa: E402
from streams.memory.facts import fact_id, find_facts, search_text, supersedes  # noqa: E402
from streams.memory.ingest import embed_text  # noqa: E402
from streams.prepare.chain import StageContext, build_stages, run_chain  # noqa: E402
from streams.stages import Item  # noqa: E402

OUT = ROOT / "bench" / "results" / "enrichment.json"
TENANT, OTHER_TENANT = "acme", "globex"
SMALL_USER, BIG_USER = "u-small", "u-big"
TARGET_P50_MS = 20.0
BATCHES = (1, 8)
#: batches before timing starts, at least; more while the user's partition is still loading
WARMUP = 5
#: the most seconds of warm-up (a 100k partition loads in a few seconds)
WARMUP_MAX_S = 120.0
#: store writes in flight while filling (the memory-store bench's figure)
LOAD_CONCURRENCY = 64
#: users of the other tenant and their interactions each: scoping is by (tenant, user), so they only
#: have to exist beside the measured ones
OTHER_TENANT_USERS, OTHER_TENANT_EACH = 50, 100
#: a history spans this long (interactions evenly spread), inside the default retention of 365 days
HISTORY_S = 300 * 86400.0
#: noise added to a stored vector, as a norm relative to its base sentence's unit vector (cosine ~0.85)
JITTER = 0.6
#: share of interactions that state a fact (the rest are questions and requests)
STATING_SHARE = 0.05
ANSWER = "Here is a short answer with a couple of suggestions you could try."
PRIVACY_KEY = "bench-privacy-key"

_OPENERS = ["Can you help me with", "What should I know about", "Give me ideas for", "How do I get better at",
            "Any tips on", "Explain the basics of", "Make me a plan for", "What are common mistakes in"]
_TOPICS = ["sourdough baking", "marathon training", "learning Japanese", "a trip to Lisbon", "vegetable gardening",
           "home office setup", "saving for a house", "watercolour painting", "jazz piano", "electric cars",
           "board game nights", "a birthday party", "rock climbing", "tax forms", "job interviews",
           "meal prep for the week", "a road trip in Scotland", "keeping houseplants alive", "learning to swim",
           "writing a cover letter", "a wedding speech", "chess openings", "a camping weekend", "photography at night",
           "training a puppy", "fixing a bike puncture", "a budget spreadsheet", "reading more books",
           "a family reunion", "sleeping better", "public speaking", "a vegetable curry", "moving to a new city",
           "learning the guitar", "a science fair project", "a job in nursing", "running a book club",
           "cooking for guests", "a standing desk", "winter hiking"]
_WHEN = ["", " this weekend", " next month", " before the holidays", " on a small budget", " as a beginner",
         " with two kids", " in the evenings"]
_STATEMENTS = (
    [f"My favourite colour is {c}." for c in ("red", "teal", "green", "blue", "orange", "purple", "yellow")]
    + [f"My favourite food is {f}." for f in ("pasta", "sushi", "curry", "tacos", "ramen", "paella", "dumplings")]
    + [f"I am {d}." for d in ("vegetarian", "vegan", "pescatarian")]
    + [f"I work as a {j}." for j in ("nurse", "teacher", "engineer", "chef", "librarian", "pilot")]
    + [f"I love {x}." for x in ("jazz records", "board games", "mountain hiking", "black coffee", "old films",
                                 "crime novels", "street food", "gardening", "chess", "cycling")]
    + [f"I hate {x}." for x in ("olives", "horror films", "loud music", "spicy food", "early mornings")]
    + [f"I am allergic to {x}." for x in ("shellfish", "peanuts", "cats", "pollen")]
    + ["Keep answers short.", "Explain things in detail.", "Use bullet points."]
)
_QUESTIONS = ["What colour should I paint my bedroom?", "Suggest a dinner recipe for tonight.",
              "What could I cook for friends this weekend?", "Recommend a hobby for rainy days.",
              "Which snacks should I pack for a hike?", "What should I listen to while working?",
              "Plan a relaxed Sunday for me.", "How do I prepare for a job interview at a hospital?",
              "What gift should I buy for my sister?", "Give me a weekly meal plan.",
              "What should I read next?", "How can I get fitter before summer?"]


# --- data -------------------------------------------------------------------------------------------------------

def sentences(rng: random.Random, n: int) -> list[str]:
    """`n` distinct generated requests (the texts stored interactions are copies of)."""
    combos = [f"{o} {t}{w}?" for o in _OPENERS for t in _TOPICS for w in _WHEN]
    return rng.sample(combos, min(n, len(combos)))


def questions(rng: random.Random, n: int) -> list[str]:
    """New questions about the same topics: what the measured jobs ask."""
    combos = [f"{o} {t}{w}?" for o in _OPENERS for t in _TOPICS for w in _WHEN]
    return _QUESTIONS + rng.sample(combos, n)


class Library:
    """The embedded texts: stored vectors are jittered copies of these rows."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.texts, self.vectors = texts, np.asarray(vectors, dtype=np.float32)
        self.row = {t: i for i, t in enumerate(texts)}

    def jittered(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Copies of the rows' vectors, each with noise of norm about JITTER, L2-normalised."""
        dims = self.vectors.shape[1]
        noise = rng.normal(scale=JITTER / np.sqrt(dims), size=(len(rows), dims)).astype(np.float32)
        out = self.vectors[rows] + noise
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


class History:
    """One user's interactions, facts and their vectors, generated in order of time."""

    def __init__(self, tenant: str, user: str, n: int, facts: int, now: float, lib: Library, bases: list[str],
                 rng: random.Random, nrng: np.random.Generator) -> None:
        self.tenant, self.user = tenant, user
        step = HISTORY_S / max(1, n)
        start = now - HISTORY_S
        self.interactions: list[Interaction] = []
        texts: list[str] = []
        for i in range(n):
            stating = rng.random() < STATING_SHARE
            prompt = rng.choice(_STATEMENTS) if stating else rng.choice(bases)
            texts.append(embed_text(Interaction("", tenant, user, None, "text", prompt, ANSWER)))
            self.interactions.append(Interaction(f"{user}-j{i}", tenant, user, f"s{i // 20}", "text", prompt, ANSWER,
                                                 start + i * step, 0.5, now + 365 * 86400.0))
        self.facts = self._facts(facts, n, start, step, rng)
        rows = [lib.row[t] for t in texts] + [lib.row[search_text(f.relation, f.text)] for f in self.facts]
        vectors = lib.jittered(np.array(rows, dtype=np.int64), nrng)
        self.records = [VectorRecord(i.id, vectors[k], "interaction", i.created_at, i.expires_at)
                        for k, i in enumerate(self.interactions)]
        self.records += [VectorRecord(f.id, vectors[n + k], "fact", f.created_at, f.expires_at)
                         for k, f in enumerate(self.facts)]

    def _facts(self, count: int, n: int, start: float, step: float, rng: random.Random) -> list[Fact]:
        """Facts stated along the history; each replaces what it contradicts, as the memory writer does."""
        out: list[Fact] = []
        current: dict[str, Fact] = {}
        for k in range(count):
            position = int(k * n / max(1, count))
            found = find_facts(rng.choice(_STATEMENTS))[0]
            job = f"{self.user}-j{position}"
            fact = Fact(fact_id(self.tenant, self.user, found.relation, found.object, f"{job}:{k}"), self.tenant,
                        self.user, "user", found.relation, found.object, found.text, found.kind, "chat", job,
                        start + position * step + k * 1e-3, found.importance, expires_at=start + HISTORY_S + 365 * 86400)
            for old in supersedes(fact, list(current.values())):
                replaced = current.pop(old)
                replaced.superseded_by, replaced.superseded_at = fact.id, fact.created_at
            current[fact.id] = fact
            out.append(fact)
        return out


def statement_texts() -> list[str]:
    """Every text a stored vector copies: the statements as interactions, and the facts found in them."""
    out = []
    for s in _STATEMENTS:
        out.append(embed_text(Interaction("", "", "", None, "text", s, ANSWER)))
        out += [search_text(f.relation, f.text) for f in find_facts(s)]
    return out


# --- filling ----------------------------------------------------------------------------------------------------

async def _in_flight(calls: Iterator[Awaitable]) -> None:
    while chunk := list(itertools.islice(calls, LOAD_CONCURRENCY)):
        await asyncio.gather(*chunk)


def _rows(store: SqliteMemoryStore, h: History, now: float) -> Iterator[Awaitable]:
    yield store.put_profile(Profile(h.tenant, h.user, preferences={"answer_length": "short"}, created_at=now,
                                    updated_at=now))
    for item in h.interactions:
        yield store.put_interaction(item)
    for fact in h.facts:
        yield store.put_fact(fact)


async def fill(home: Path, histories: Iterable[History], now: float, build_threads: int) -> dict[str, float]:
    """Write every history into the stores, then close them (the index folds its logs into snapshots and
    graphs, as a process that stops does). The build may use more threads than the streams process."""
    store = SqliteMemoryStore(home / "memory.db")
    index = EmbeddedVectorIndex(home / "vectors", dims=384, build_threads=build_threads)
    await store.start()
    await index.start()
    spent = {"store_s": 0.0, "vectors_s": 0.0}
    try:
        for h in histories:
            began = time.perf_counter()
            await _in_flight(_rows(store, h, now))
            spent["store_s"] += time.perf_counter() - began
            began = time.perf_counter()
            await index.upsert(h.tenant, h.user, h.records)
            spent["vectors_s"] += time.perf_counter() - began
    finally:
        began = time.perf_counter()
        await index.close()
        spent["vectors_s"] += time.perf_counter() - began
        await store.close()
    return {k: round(v, 1) for k, v in spent.items()}


# --- measuring --------------------------------------------------------------------------------------------------

def q(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def pcts(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(q(values, 0.5), 3), "p99_ms": round(q(values, 0.99), 3)}


def chat(user: str, text: str, job: str, session: str | None = "live") -> dict:
    return {"job_id": job, "tenant": TENANT, "user": user, "session": session, "modality": "text",
            "params": {"messages": [{"role": "user", "content": text}], "temperature": 0}}


async def latency(stage, pick_user: Callable[[], str], asked: list[tuple[str, np.ndarray]], batch: int,
                  rounds: int, rng: random.Random) -> dict:
    """The stage alone over `rounds` batches: its milliseconds per batch (what each job of it waits).

    Warm-up first, until a batch goes through without degrading (at least WARMUP batches): a user's
    partition loads on its first query, and a large one takes longer than the stage's budget, so the
    first jobs go on without memory while it loads (what a process that just started serves)."""
    spent: list[float] = []
    degraded = used = 0
    warm_began, warm_batches = time.perf_counter(), 0

    def batch_of(tag: str) -> list[Item]:
        items = []
        for j in range(batch):
            text, vector = rng.choice(asked)
            item = Item(parse_request(chat(pick_user(), text, f"lat-{batch}-{tag}-{j}")), b"k")
            item.embedding = vector  # what the embedding stage sets
            items.append(item)
        return items

    while True:
        items = batch_of(f"w{warm_batches}")
        await run_chain([stage], items)
        warm_batches += 1
        settled = not any("memory" in i.degraded for i in items)
        if (settled and warm_batches >= WARMUP) or time.perf_counter() - warm_began > WARMUP_MAX_S:
            break
    warm_s = time.perf_counter() - warm_began
    for r in range(rounds):
        items = batch_of(str(r))
        spent.append((await run_chain([stage], items))["enrichment"])
        degraded += sum("memory" in i.degraded for i in items)
        used += sum(len(i.memories) for i in items)
    jobs = rounds * batch
    return {"batch": batch, "batches": rounds, **pcts(spent), "per_job_p50_ms": round(q(spent, 0.5) / batch, 3),
            "degraded_jobs": degraded, "memories_per_job": round(used / jobs, 2),
            "warmup_batches": warm_batches, "warmup_s": round(warm_s, 2)}


async def breakdown(backends: MemoryBackends, user: str, asked: list[tuple[str, np.ndarray]], reads: int,
                    rng: random.Random) -> dict:
    """Each read the retriever makes for one job, alone, one at a time (streams/enrichment/engine.py)."""
    k = backends.settings.top_k * HITS_PER_SLOT
    store, index = backends.store, backends.index
    hits = await index.query(TENANT, user, asked[0][1], k)
    wanted = [h.id for h in hits if h.kind == "interaction"]
    calls: dict[str, Callable[[], Awaitable]] = {
        f"vector_query_k{k}": lambda: index.query(TENANT, user, rng.choice(asked)[1], k),
        "facts_all": lambda: store.facts(TENANT, user, current_only=False),
        f"get_interactions_{len(wanted)}": lambda: store.get_interactions(TENANT, user, wanted),
        "get_profile": lambda: store.get_profile(TENANT, user),
        "session_turns": lambda: backends.sessions.recent(TENANT, user, "live", backends.settings.session_turns),
    }
    out = {}
    for name, call in calls.items():
        samples = []
        for i in range(reads + 5):
            began = time.perf_counter()
            await call()
            if i >= 5:
                samples.append((time.perf_counter() - began) * 1000)
        out[name] = pcts(samples)
    out["facts_rows"] = len(await store.facts(TENANT, user, current_only=False))
    return out


async def chain(stages: list, user: str, batch: int, jobs: int, prompts: Iterator[str]) -> dict:
    """Jobs/s through the chain with enrichment and without it, alternating batch by batch."""
    without = [s for s in stages if s.name != "enrichment"]
    wall = {"on": 0.0, "off": 0.0}
    enrichment_ms: list[float] = []
    degraded = 0
    for r in range(jobs // batch):
        for variant, chosen in (("on", stages), ("off", without)) if r % 2 == 0 else (("off", without), ("on", stages)):
            items = [Item(parse_request(chat(user, next(prompts), f"chain-{variant}-{batch}-{r}-{j}")), b"k")
                     for j in range(batch)]
            began = time.perf_counter()
            spent = await run_chain(chosen, items)
            wall[variant] += time.perf_counter() - began
            if variant == "on":
                enrichment_ms.append(spent["enrichment"])
                degraded += sum("memory" in i.degraded for i in items)
    done = (jobs // batch) * batch
    on, off = done / wall["on"], done / wall["off"]
    return {"batch": batch, "jobs": done, "on_jobs_per_s": round(on, 1), "off_jobs_per_s": round(off, 1),
            "ratio": round(on / off, 3), "enrichment_ms_per_batch_p50": round(q(enrichment_ms, 0.5), 2),
            "degraded_jobs": degraded}


def new_prompts(rng: random.Random) -> Iterator[str]:
    """Every prompt new (a number of its own), as new questions are: the embedding memo and the cache miss."""
    pool = _QUESTIONS + [f"{o} {t}{w}?" for o in _OPENERS for t in _TOPICS for w in _WHEN]
    for i in itertools.count():
        yield f"{rng.choice(pool)} (question {i})"


async def run(args) -> dict:
    rng, nrng = random.Random(7), np.random.default_rng(7)
    now = time.time()
    began = time.perf_counter()
    embedder = load_embedder()
    bases = sentences(rng, args.sentences)
    stored_texts = list(dict.fromkeys([embed_text(Interaction("", "", "", None, "text", b, ANSWER)) for b in bases]
                                      + statement_texts()))
    asked_texts = questions(rng, 52)
    vectors = embedder.encode(stored_texts + asked_texts, 32)
    lib = Library(stored_texts, vectors[: len(stored_texts)])
    asked = list(zip(asked_texts, np.asarray(vectors[len(stored_texts):], dtype=np.float32)))
    embed_s = time.perf_counter() - began

    per_1k = args.facts_per_1k
    spread = [f"u-{i:04d}" for i in range(args.spread_users)]
    each = max(1, args.big // max(1, args.spread_users))

    def histories() -> Iterator[History]:  # made one at a time: a 100k history is ~200 MB of records
        yield History(TENANT, SMALL_USER, args.small, max(1, args.small * per_1k // 1000), now, lib, bases, rng, nrng)
        yield History(TENANT, BIG_USER, args.big, max(1, args.big * per_1k // 1000), now, lib, bases, rng, nrng)
        for u in spread:
            yield History(TENANT, u, each, max(1, each * per_1k // 1000), now, lib, bases, rng, nrng)
        for u in range(OTHER_TENANT_USERS):
            yield History(OTHER_TENANT, f"u-{u:04d}", OTHER_TENANT_EACH, 2, now, lib, bases, rng, nrng)

    results: dict = {
        "machine": platform.platform(), "cpus": os.cpu_count(), "load_average_at_start": round(os.getloadavg()[0], 1),
        "target_p50_ms": TARGET_P50_MS,
        "setup": {"tenant": TENANT, "small": args.small, "big": args.big, "facts_per_1k": per_1k,
                  "spread_users": args.spread_users, "spread_each": each, "other_tenant_users": OTHER_TENANT_USERS,
                  "other_tenant_each": OTHER_TENANT_EACH, "embedded_texts": len(stored_texts),
                  "question_texts": len(asked_texts), "embed_s": round(embed_s, 1)},
    }
    with tempfile.TemporaryDirectory() as tmp, LocalRedis() as redis_server:
        home = Path(tmp)
        began = time.perf_counter()
        results["setup"]["fill"] = await fill(home, histories(), now, args.build_threads)
        results["setup"]["fill_s"] = round(time.perf_counter() - began, 1)
        print(f"filled in {results['setup']['fill_s']} s ({results['setup']['fill']})", flush=True)

        settings = MemorySettings(sqlite_path=str(home / "memory.db"), vector_path=str(home / "vectors"))
        backends = MemoryBackends(settings, home, redis_server.url)
        results["settings"] = {"top_k": settings.top_k, "budget_tokens": settings.budget_tokens,
                               "timeout_ms": settings.timeout_ms, "session_turns": settings.session_turns}
        semantic_cache = build_cache(CacheSettings(), redis_server.url)
        ctx = StageContext(redis_url=redis_server.url, privacy=PrivacySettings(key=PRIVACY_KEY),
                           embedding=EmbeddingSettings(), cache_settings=CacheSettings(),
                           semantic_cache=semantic_cache, memory=backends)
        try:
            stages = build_stages(["privacy", "embedding", "enrichment", "cache"], ctx)
            enrichment = next(s for s in stages if s.name == "enrichment")
            await backends.start()
            for user in (SMALL_USER, BIG_USER, *spread[:64]):  # a live session: its recent turns are read too
                await backends.sessions.append(TENANT, user, "live", Turn("user", rng.choice(bases), "prev-1", now - 60),
                                               Turn("assistant", ANSWER, "prev-1", now - 59))
            scenarios = [("small", f"one user, {args.small:,} interactions", lambda: SMALL_USER),
                         ("big", f"one user, {args.big:,} interactions", lambda: BIG_USER),
                         ("tenant", f"a random one of {args.spread_users:,} users sharing {args.big:,} interactions",
                          lambda: rng.choice(spread))]
            results["latency"] = []
            for key, label, pick in scenarios:
                for batch in BATCHES:
                    rounds = args.rounds if batch == 1 else max(20, args.rounds // 4)
                    row = {"scenario": key, "label": label, **await latency(enrichment, pick, asked, batch, rounds, rng)}
                    results["latency"].append(row)
                    print(f"enrichment, {label}, batch {batch}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms"
                          f" per batch ({row['memories_per_job']} memories per job, {row['degraded_jobs']} degraded;"
                          f" warm after {row['warmup_batches']} batches, {row['warmup_s']} s)",
                          flush=True)
            results["breakdown_big"] = await breakdown(backends, BIG_USER, asked, args.reads, rng)
            print("reads at the big user: " + ", ".join(f"{k} {v['p50_ms']:.2f}/{v['p99_ms']:.2f} ms"
                                                       for k, v in results["breakdown_big"].items()
                                                       if isinstance(v, dict)), flush=True)
            prompts = new_prompts(rng)
            warm = [Item(parse_request(chat(BIG_USER, next(prompts), f"warm-{i}")), b"k") for i in range(8)]
            await run_chain(stages, warm)  # the analyzer and the model loaded, the cache's Redis reached
            results["chain"] = []
            for key, user in (("small", SMALL_USER), ("big", BIG_USER)):
                for batch in BATCHES:
                    row = {"scenario": key, **await chain(stages, user, batch, args.chain_jobs, prompts)}
                    results["chain"].append(row)
                    print(f"chain privacy,embedding,enrichment,cache, {key} user, batch {batch}: "
                          f"{row['on_jobs_per_s']} jobs/s with enrichment, {row['off_jobs_per_s']} without "
                          f"(ratio {row['ratio']:.2f})", flush=True)
        finally:
            await backends.aclose()
            await ctx.aclose()
    results["load_average_at_end"] = round(os.getloadavg()[0], 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1_000, help="interactions of the small user")
    parser.add_argument("--big", type=int, default=100_000, help="interactions of the big user, and of the spread users")
    parser.add_argument("--spread-users", type=int, default=1_000, help="users sharing --big interactions")
    parser.add_argument("--facts-per-1k", type=int, default=20, help="facts stated per 1,000 interactions")
    parser.add_argument("--sentences", type=int, default=400, help="distinct generated requests embedded")
    parser.add_argument("--rounds", type=int, default=200, help="batches of 1 per latency row (of 8: a quarter)")
    parser.add_argument("--reads", type=int, default=100, help="calls per read in the breakdown")
    parser.add_argument("--chain-jobs", type=int, default=96, help="jobs per variant and batch size in the chain")
    parser.add_argument("--build-threads", type=int, default=2, help="threads of the HNSW build while filling")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the redis-server is stopped on a kill too
    began = time.perf_counter()
    results = asyncio.run(run(args))
    results["wall_s"] = round(time.perf_counter() - began, 1)
    big = next(r for r in results["latency"] if r["scenario"] == "big" and r["batch"] == 1)
    print(f"added p50 at {args.big:,}: {big['p50_ms']:.2f} ms (target < {TARGET_P50_MS} ms); "
          f"run took {results['wall_s']} s")
    OUT.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
