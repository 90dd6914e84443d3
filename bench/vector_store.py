"""The embedded vector index, chosen by measurement: candidates at 100k sentence-embedding-like vectors.

Data: `--n` 384-d vectors drawn around `--clusters` topic centres, varying mostly along a few
directions of their topic, L2-normalised (sentence embeddings are clustered by topic and have a low
intrinsic dimension, not uniform on the sphere), and `--queries` held-out queries from
the same distribution. Every candidate answers top-10 by cosine; recall@10 is against exact search.

Two shapes of data, both `--n` vectors:
- one user's 100k vectors: one partition, searched whole;
- 100k vectors spread over `--users` users, queried for one user: either one shared index filtered
  to the user's labels, or a partition per user scanned exactly (what genloom does).

Also the exact scan's latency by partition size, which places the embedded index's switch from an
exact scan to HNSW, and genloom's own index (infra/vectors/embedded.py) driven through its contract.

`--minilm` uses real all-MiniLM-L6-v2 embeddings of generated sentences instead (too slow for 100k
in the default run on this CPU: about 150 sentences/s).

Queries run on one thread (OMP_NUM_THREADS=1, as the streams process would); builds use `--build-threads`.

    python bench/vector_store.py [--n 100000] [--queries 300] [--build-threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from infra.vectors.base import VectorRecord
from infra.vectors.embedded import EmbeddedVectorIndex
from infra.vectors.partition import EXACT_MAX, HNSW_EF, HNSW_EF_CONSTRUCTION, HNSW_M

RESULTS = Path(__file__).parent / "results" / "vector_store.json"
DIMS = 384
K = 10


#: directions in which the sentences of one topic vary (sentence embeddings have a low intrinsic dimension)
TOPIC_RANK = 16


class Topics:
    """Random topic centres, each with its own few directions of variation, plus a little isotropic noise."""

    def __init__(self, rng: np.random.Generator, topics: int, spread: float, noise: float) -> None:
        self.rng, self.spread, self.noise = rng, spread, noise
        self.centres = rng.normal(size=(topics, DIMS)).astype(np.float32)
        self.centres /= np.linalg.norm(self.centres, axis=1, keepdims=True)
        self.bases = (rng.normal(size=(topics, TOPIC_RANK, DIMS)) / np.sqrt(DIMS)).astype(np.float32)

    def sample(self, n: int) -> np.ndarray:
        picks = self.rng.integers(0, len(self.centres), size=n)
        along = self.rng.normal(scale=self.spread / np.sqrt(TOPIC_RANK), size=(n, TOPIC_RANK)).astype(np.float32)
        x = (self.centres[picks] + np.einsum("nk,nkd->nd", along, self.bases[picks])
             + self.rng.normal(scale=self.noise / np.sqrt(DIMS), size=(n, DIMS)).astype(np.float32))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


_SUBJECTS = ["I", "My sister", "My manager", "Our team", "My doctor", "The landlord", "My son", "A friend of mine",
             "My partner", "The new neighbour", "My grandmother", "Our dentist"]
_VERBS = ["really likes", "is allergic to", "keeps asking about", "wants to learn", "stopped buying", "recommended",
          "cannot stand", "spent the weekend on", "is saving money for", "wrote a long email about", "dreams about",
          "complained about"]
_OBJECTS = ["shellfish", "vintage bicycles", "the quarterly budget", "Italian cooking", "marathon training",
            "a trip to Lisbon", "jazz records", "the garden fence", "learning Japanese", "electric cars",
            "board games", "the school play", "sourdough bread", "mountain hiking", "a new laptop", "tax forms",
            "watercolour painting", "the football league", "a standing desk", "black coffee"]
_WHEN = ["", " last week", " every morning", " since the spring", " on Sundays", " after the move",
         " this year", " before the holidays"]


def minilm_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """Real all-MiniLM-L6-v2 embeddings of `n` generated memory-like sentences (about 150/s here)."""
    from infra.models.embedder import load_embedder

    pick = [rng.integers(0, len(w), size=n) for w in (_SUBJECTS, _VERBS, _OBJECTS, _WHEN)]
    texts = [f"{_SUBJECTS[a]} {_VERBS[b]} {_OBJECTS[c]}{_WHEN[d]} (note {i})."
             for i, (a, b, c, d) in enumerate(zip(*pick, strict=True))]
    return np.asarray(load_embedder().encode(texts, 32), dtype=np.float32)


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ data.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]))


def timed(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray) -> tuple[list[np.ndarray], dict]:
    search(queries[0])  # warm
    found, samples = [], []
    for q in queries:
        started = time.perf_counter()
        found.append(np.asarray(search(q)))
        samples.append(time.perf_counter() - started)
    ordered = sorted(samples)
    return found, {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000}


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def numpy_exact(data: np.ndarray, folder: Path, threads: int) -> tuple[Callable, float, int]:
    started = time.perf_counter()
    np.save(folder / "numpy.npy", data)
    build = time.perf_counter() - started

    def search(q: np.ndarray) -> np.ndarray:
        scores = data @ q
        top = np.argpartition(-scores, K - 1)[:K]
        return top[np.argsort(-scores[top])]
    return search, build, size_of(folder / "numpy.npy")


def faiss_flat(data: np.ndarray, folder: Path, threads: int) -> tuple[Callable, float, int]:
    import faiss

    started = time.perf_counter()
    index = faiss.IndexFlatIP(DIMS)
    index.add(data)
    build = time.perf_counter() - started
    faiss.write_index(index, str(folder / "flat.faiss"))
    faiss.omp_set_num_threads(1)
    return lambda q: index.search(q[None], K)[1][0], build, size_of(folder / "flat.faiss")


def hnswlib_index(data: np.ndarray, threads: int, ef: int):
    import hnswlib

    index = hnswlib.Index(space="ip", dim=DIMS)
    index.init_index(max_elements=len(data), M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION)
    index.add_items(data, np.arange(len(data)), num_threads=threads)
    index.set_ef(ef)
    index.set_num_threads(1)
    return index


def hnswlib_hnsw(data: np.ndarray, folder: Path, threads: int, ef: int = HNSW_EF) -> tuple[Callable, float, int]:
    started = time.perf_counter()
    index = BUILT["hnswlib"] = hnswlib_index(data, threads, ef)
    build = time.perf_counter() - started
    index.save_index(str(folder / "index.hnsw"))
    return lambda q: index.knn_query(q, K)[0][0], build, size_of(folder / "index.hnsw")


def faiss_hnsw_index(data: np.ndarray, threads: int, ef: int):
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(DIMS, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(data)
    index.hnsw.efSearch = ef
    faiss.omp_set_num_threads(1)
    return index


def faiss_hnsw(data: np.ndarray, folder: Path, threads: int, ef: int = HNSW_EF) -> tuple[Callable, float, int]:
    import faiss

    started = time.perf_counter()
    index = BUILT["faiss"] = faiss_hnsw_index(data, threads, ef)
    build = time.perf_counter() - started
    faiss.write_index(index, str(folder / "hnsw.faiss"))
    return lambda q: index.search(q[None], K)[1][0], build, size_of(folder / "hnsw.faiss")


def usearch_hnsw(data: np.ndarray, folder: Path, threads: int, ef: int = HNSW_EF) -> tuple[Callable, float, int]:
    from usearch.index import Index

    started = time.perf_counter()
    index = Index(ndim=DIMS, metric="ip", dtype="f32", connectivity=HNSW_M, expansion_add=HNSW_EF_CONSTRUCTION,
                  expansion_search=ef)
    index.add(np.arange(len(data)), data, threads=threads)
    build = time.perf_counter() - started
    index.save(str(folder / "index.usearch"))
    return lambda q: index.search(q, K, threads=1).keys, build, size_of(folder / "index.usearch")


#: queries of the slowest layout (a Python callback per visited node: tens of ms each)
SLOW_QUERIES = 50
#: the HNSW indexes built for the one-user table, reused by the search-breadth sweep and the shared-index
#: rows (the same vectors: a shared index's labels are owned by users instead of one)
BUILT: dict[str, object] = {}

CANDIDATES: dict[str, Callable] = {
    "numpy exact (float32 matmul)": numpy_exact,
    "faiss-cpu IndexFlatIP (exact)": faiss_flat,
    f"hnswlib 0.8.0 HNSW (M={HNSW_M}, ef={HNSW_EF})": hnswlib_hnsw,
    f"faiss-cpu IndexHNSWFlat (M={HNSW_M}, ef={HNSW_EF})": faiss_hnsw,
    f"usearch HNSW f32, ip (M={HNSW_M}, ef={HNSW_EF})": usearch_hnsw,
}


def one_user(data: np.ndarray, queries: np.ndarray, truth: np.ndarray, threads: int, work: Path) -> list[dict]:
    rows = []
    for name, make in CANDIDATES.items():
        folder = work / name.split()[0]
        folder.mkdir()
        search, build, size = make(data, folder, threads)
        found, lat = timed(search, queries)
        rows.append({"name": name, "recall_at_10": recall(found, truth), **lat, "build_s": build, "disk_bytes": size})
        print(f"  {name:44s} recall@10 {rows[-1]['recall_at_10']:.3f}  p50 {lat['p50_ms']:6.3f} ms  "
              f"p99 {lat['p99_ms']:6.3f} ms  build {build:6.1f} s  {size / 1e6:6.1f} MB", flush=True)
        shutil.rmtree(folder)
    return rows


def ef_sweep(queries: np.ndarray, truth: np.ndarray) -> list[dict]:
    """hnswlib's recall and latency against its search breadth, on the one-user build."""
    index = BUILT["hnswlib"]
    rows = []
    for ef in (16, 32, 64, 128, 256):
        index.set_ef(ef)
        found, lat = timed(lambda q: index.knn_query(q, K)[0][0], queries)
        rows.append({"ef": ef, "recall_at_10": recall(found, truth), **lat})
        print(f"  hnswlib ef={ef:<4d} recall@10 {rows[-1]['recall_at_10']:.3f}  p50 {lat['p50_ms']:.3f} ms", flush=True)
    index.set_ef(HNSW_EF)
    return rows


def many_users(data: np.ndarray, queries: np.ndarray, users: int) -> list[dict]:
    """`data` spread over `users`; each query asks for one user's top 10."""
    import faiss

    owner = np.arange(len(data)) % users
    asked = np.arange(len(queries)) % users
    rows_of = [np.flatnonzero(owner == u) for u in range(users)]
    truth = [rows_of[u][exact_top(data[rows_of[u]], q[None], K)[0]] for q, u in zip(queries, asked, strict=True)]
    results = []

    def record(name: str, search: Callable[[int, np.ndarray], np.ndarray], n: int = len(queries)) -> None:
        it = iter([asked[0], *asked[:n]])  # the first serves timed()'s warm-up call
        found, lat = timed(lambda q: search(next(it), q), queries[:n])
        results.append({"name": name, "queries": n, "recall_at_10": recall(found, truth[:n]), **lat})
        print(f"  {name:58s} recall@10 {results[-1]['recall_at_10']:.3f}  p50 {lat['p50_ms']:6.3f} ms  "
              f"p99 {lat['p99_ms']:6.3f} ms", flush=True)

    partitions = [data[r] for r in rows_of]

    def partition_scan(u: int, q: np.ndarray) -> np.ndarray:
        scores = partitions[u] @ q
        top = np.argpartition(-scores, K - 1)[:K]
        return rows_of[u][top[np.argsort(-scores[top])]]
    record("partition per user, numpy exact scan (genloom)", partition_scan)

    def masked_scan(u: int, q: np.ndarray) -> np.ndarray:
        scores = np.where(owner == u, data @ q, -np.inf)
        top = np.argpartition(-scores, K - 1)[:K]
        return top[np.argsort(-scores[top])]
    record("one shared matrix, numpy exact scan + user mask", masked_scan)

    shared = BUILT["hnswlib"]
    record(f"one shared hnswlib index, filter callback (ef={HNSW_EF})",
           lambda u, q: shared.knn_query(q, K, filter=lambda label: owner[label] == u)[0][0],
           SLOW_QUERIES)
    fshared = BUILT["faiss"]
    selectors = [faiss.IDSelectorBatch(r.astype(np.int64)) for r in rows_of]
    record(f"one shared faiss HNSW, IDSelectorBatch (ef={HNSW_EF})",
           lambda u, q: fshared.search(q[None], K, params=faiss.SearchParametersHNSW(sel=selectors[u],
                                                                                     efSearch=HNSW_EF))[1][0])
    return results


def exact_by_size(data: np.ndarray, queries: np.ndarray) -> list[dict]:
    rows = []
    for size in (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000):
        if size > len(data):
            break
        part = np.ascontiguousarray(data[:size])

        def search(q: np.ndarray, part: np.ndarray = part) -> np.ndarray:
            scores = part @ q
            return np.argpartition(-scores, K - 1)[:K]
        _, lat = timed(search, queries[:200])
        rows.append({"size": size, **lat})
        print(f"  exact scan of {size:>7d} vectors: p50 {lat['p50_ms']:.3f} ms  p99 {lat['p99_ms']:.3f} ms", flush=True)
    return rows


async def genloom_index(data: np.ndarray, queries: np.ndarray, truth: np.ndarray, work: Path, threads: int) -> dict:
    """infra/vectors/embedded.py through its contract: one user's `len(data)` vectors, upserted in batches."""
    now = time.time()
    index = EmbeddedVectorIndex(work / "genloom", DIMS, build_threads=threads)
    await index.start()
    started = time.perf_counter()
    for i in range(0, len(data), 10_000):
        await index.upsert("bench", "u", [VectorRecord(str(j), data[j], "interaction", now)
                                          for j in range(i, min(i + 10_000, len(data)))])
    await index.close()
    build = time.perf_counter() - started
    index = EmbeddedVectorIndex(work / "genloom", DIMS)
    await index.start()
    started = time.perf_counter()
    await index.count("bench", "u")
    load = time.perf_counter() - started
    found, samples = [], []
    for q in queries:
        t = time.perf_counter()
        hits = await index.query("bench", "u", q, K)
        samples.append(time.perf_counter() - t)
        found.append(np.array([int(h.id) for h in hits]))
    await index.close()
    ordered = sorted(samples)
    row = {"recall_at_10": recall(found, truth), "p50_ms": statistics.median(ordered) * 1000,
           "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000, "upsert_s": build, "reopen_s": load,
           "disk_bytes": size_of(work / "genloom")}
    print(f"  genloom EmbeddedVectorIndex, one {len(data)}-vector partition: recall@10 {row['recall_at_10']:.3f}  p50 "
          f"{row['p50_ms']:.3f} ms  p99 {row['p99_ms']:.3f} ms  upserts {build:.1f} s  reopen {load:.1f} s  "
          f"{row['disk_bytes'] / 1e6:.1f} MB", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--clusters", type=int, default=1_000)
    parser.add_argument("--spread", type=float, default=2.0, help="Variation along a topic's own directions.")
    parser.add_argument("--noise", type=float, default=0.3, help="Isotropic noise (larger: harder for HNSW).")
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--minilm", action="store_true",
                        help="Real all-MiniLM-L6-v2 embeddings of generated sentences instead (slow: ~150/s here).")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.n // args.users < K:
        parser.error(f"--users {args.users} leaves fewer than {K} vectors per user; lower it")
    rng = np.random.default_rng(0)
    if args.minilm:
        import torch

        torch.set_num_threads(args.build_threads)
        both = minilm_like(rng, args.n + args.queries)
        data, queries = both[: args.n], both[args.n:]
    else:
        topics = Topics(rng, args.clusters, args.spread, args.noise)
        data, queries = topics.sample(args.n), topics.sample(args.queries)
    truth = exact_top(data, queries, K)
    own = np.einsum("ij,ij->i", data[:1000], data[:1000])  # sanity: normalised
    assert np.allclose(own, 1.0, atol=1e-4)
    nn = float(np.mean((queries @ data.T).max(axis=1)))
    load_start, wall = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="genloom-vectors-") as tmp:
        work = Path(tmp)
        print(f"one user, {args.n} vectors, {args.queries} queries, top-{K} cosine (mean best cosine {nn:.2f}):")
        single = one_user(data, queries, truth, args.build_threads, work)
        print("hnswlib search breadth:")
        sweep = ef_sweep(queries, truth)
        print(f"{args.n} vectors over {args.users} users, each query for one user:")
        multi = many_users(data, queries, args.users)
        print("exact scan by partition size:")
        sizes = exact_by_size(data, queries)
        print(f"genloom's index (exact up to {EXACT_MAX} vectors, hnswlib above):")
        ours = asyncio.run(genloom_index(data, queries, truth, work, args.build_threads))
    result = {
        "n": args.n, "dims": DIMS, "k": K, "queries": args.queries, "clusters": args.clusters,
        "spread": args.spread, "noise": args.noise, "topic_rank": TOPIC_RANK, "data": "minilm" if args.minilm else "synthetic", "mean_best_cosine": nn, "users": args.users, "build_threads": args.build_threads,
        "query_threads": 1, "hnsw": {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef": HNSW_EF},
        "exact_max": EXACT_MAX, "one_user": single, "hnswlib_ef": sweep, "many_users": multi,
        "exact_by_size": sizes, "genloom": ours, "machine": platform.machine(), "cpus": os.cpu_count(),
        "load_average_at_start": round(load_start, 2), "load_average_at_end": round(os.getloadavg()[0], 2),
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
