"""One (tenant, user)'s vectors in memory: the search half of the embedded index (no I/O here).

Records live in slots of preallocated arrays; a deleted record's slot is reused, so the slot number is
also the record's label in the HNSW graph and ids (strings) map to ints with one dict. A partition is
scanned exactly (one float32 matrix-vector product) until it holds more than `EXACT_MAX` vectors; then
an hnswlib graph is built over the same slots and kept up to date. bench/vector_store.py measured both
(docs/benchmarks.md, "Vector index"): the numbers behind each constant are there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .base import VectorHit, VectorRecord

#: the most vectors a partition scans exactly: the scan of 20k 384-d vectors took 1.2 ms p50 (10k: 0.6,
#: 100k: 11-18), well inside enrichment's budget, exact, with no graph to build (10 s per 20k vectors on one
#: core), store (as large as the vectors again) or load; an HNSW search of 100k took 0.25 ms
EXACT_MAX = 20_000
#: graph degree: 16 gave recall@10 of 1.00 at ef 64 (0.995 at ef 32) on 100k embedding-like vectors
HNSW_M = 16
#: build-time breadth: 100 built 100k vectors in 25-50 s on two (busy) cores at that recall
HNSW_EF_CONSTRUCTION = 100
#: search breadth (raised to k when k is larger): the knee of recall against latency in the bench
HNSW_EF = 64
#: kinds are stored as small ints; a partition never sees more than a handful
_KIND_DTYPE = np.int16
#: the first allocation of a new partition, in slots (doubled as it fills)
_FIRST_CAPACITY = 64


def normalised(vector: np.ndarray, dims: int) -> np.ndarray:
    """The vector as float32 of length 1, or a ValueError a caller can act on."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if v.shape[0] != dims:
        raise ValueError(f"vector has {v.shape[0]} dims, this index holds {dims}-dim vectors "
                         "(GENLOOM_MEMORY_* and the embedding model must agree)")
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("vector is zero or not finite; cosine similarity is undefined for it")
    return v / norm


class Partition:
    def __init__(self, dims: int, build_threads: int = 1, exact_max: int = EXACT_MAX) -> None:
        self.dims = dims
        self.build_threads = build_threads
        self.exact_max = exact_max
        self.vectors = np.zeros((0, dims), dtype=np.float32)
        self.live = np.zeros(0, dtype=bool)
        self.kind = np.zeros(0, dtype=_KIND_DTYPE)
        self.created = np.zeros(0, dtype=np.float64)
        self.expires = np.zeros(0, dtype=np.float64)  # +inf: never
        self.ids: list[str | None] = []
        self.kind_names: list[str] = []
        self.slot_of: dict[str, int] = {}
        self.free: list[int] = []
        self.graph = None  # hnswlib.Index over the live slots, once the partition is large

    def __len__(self) -> int:
        return len(self.slot_of)

    # ---- state as arrays (what the snapshot file holds)

    def arrays(self) -> dict[str, np.ndarray]:
        used = len(self.ids)
        return {"vectors": self.vectors[:used], "live": self.live[:used], "kind": self.kind[:used],
                "created": self.created[:used], "expires": self.expires[:used],
                "ids": np.array([i or "" for i in self.ids], dtype=str),
                "kind_names": np.array(self.kind_names, dtype=str)}

    @classmethod
    def from_arrays(cls, dims: int, a: dict[str, np.ndarray], build_threads: int = 1, exact_max: int = EXACT_MAX,
                    graph=None) -> Partition:
        p = cls(dims, build_threads, exact_max)
        if a["vectors"].shape[1:] != (dims,):
            raise ValueError(f"stored vectors have {a['vectors'].shape[1:]} dims, this index holds {dims}")
        p.vectors = np.array(a["vectors"], dtype=np.float32)
        p.live, p.kind = np.array(a["live"], dtype=bool), np.array(a["kind"], dtype=_KIND_DTYPE)
        p.created, p.expires = np.array(a["created"], dtype=np.float64), np.array(a["expires"], dtype=np.float64)
        p.kind_names = [str(k) for k in a["kind_names"]]
        p.ids = [str(i) if alive else None for i, alive in zip(a["ids"], p.live, strict=True)]
        p.slot_of = {i: s for s, i in enumerate(p.ids) if i is not None}
        p.free = [s for s in range(len(p.ids) - 1, -1, -1) if p.ids[s] is None]
        if graph is not None and graph.get_current_count() <= len(p.ids):
            p.graph = graph
        p._fit_graph()
        return p

    # ---- writes

    def upsert(self, records: Sequence[VectorRecord]) -> None:
        """Insert or replace by id. Vectors are checked (and normalised) before anything changes."""
        vectors = [normalised(r.vector, self.dims) for r in records]
        slots = []
        for r, v in zip(records, vectors, strict=True):
            slot = self.slot_of.get(r.id)
            if slot is None:
                slot = self._take_slot()
                self.slot_of[r.id] = slot
                self.ids[slot] = r.id
            self.vectors[slot] = v
            self.live[slot] = True
            self.kind[slot] = self._kind_code(r.kind)
            self.created[slot] = r.created_at
            self.expires[slot] = np.inf if r.expires_at is None else r.expires_at
            slots.append(slot)
        slots = list(dict.fromkeys(slots))  # an id twice in one batch: its last record, one graph update
        if self.graph is not None and slots:
            # an existing label (a replaced record, or a reused slot of a deleted one) is updated in place
            self.graph.add_items(self.vectors[slots], np.array(slots), num_threads=self.build_threads)
        self._fit_graph()

    def delete(self, ids: Iterable[str]) -> int:
        gone = 0
        for record_id in ids:
            slot = self.slot_of.pop(record_id, None)
            if slot is None:
                continue
            self.ids[slot] = None
            self.live[slot] = False
            self.free.append(slot)
            if self.graph is not None:
                self.graph.mark_deleted(slot)
            gone += 1
        self._fit_graph()
        return gone

    def expired(self, now: float) -> list[str]:
        return [self.ids[s] for s in np.flatnonzero(self.live & (self.expires <= now))]

    # ---- reads

    def query(self, vector: np.ndarray, k: int, kinds: tuple[str, ...] | None = None) -> list[VectorHit]:
        q = normalised(vector, self.dims)
        if k < 1 or not self.slot_of:
            return []
        used = len(self.ids)
        mask = self.live[:used]
        if kinds is not None:
            codes = [self.kind_names.index(k) for k in kinds if k in self.kind_names]
            mask = mask & np.isin(self.kind[:used], codes)
        candidates = int(mask.sum())
        if candidates == 0:
            return []
        k = min(k, candidates)
        if self.graph is not None and candidates > self.exact_max:
            hit = self._graph_search(q, k, mask if candidates < len(self) else None)
            if hit is not None:
                return hit
        return self._exact(q, k, mask, candidates)

    def _exact(self, q: np.ndarray, k: int, mask: np.ndarray, candidates: int) -> list[VectorHit]:
        used = len(self.ids)
        if candidates * 2 < used:  # a few kinds of a big partition: gather them instead of scanning all
            rows = np.flatnonzero(mask)
            scores = self.vectors[rows] @ q
        else:
            rows = None
            scores = self.vectors[:used] @ q
            scores[~mask] = -np.inf
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        slots = top if rows is None else rows[top]
        return [self._hit(int(s), float(scores[t])) for s, t in zip(slots, top, strict=True)]

    def _graph_search(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> list[VectorHit] | None:
        self.graph.set_ef(max(HNSW_EF, k))
        try:
            if mask is None:
                labels, distances = self.graph.knn_query(q, k)
            else:
                labels, distances = self.graph.knn_query(q, k, filter=lambda label: bool(mask[label]))
        except RuntimeError:  # the graph found fewer than k (a heavily filtered search): scan instead
            return None
        # hnswlib's "ip" distance is 1 - inner product
        return [self._hit(int(s), 1.0 - float(d)) for s, d in zip(labels[0], distances[0], strict=True)]

    def _hit(self, slot: int, score: float) -> VectorHit:
        return VectorHit(id=self.ids[slot], kind=self.kind_names[self.kind[slot]], score=score,
                         created_at=float(self.created[slot]))

    # ---- slots and the graph

    def _kind_code(self, kind: str) -> int:
        if kind not in self.kind_names:
            if len(self.kind_names) >= np.iinfo(_KIND_DTYPE).max:
                raise ValueError("too many distinct record kinds in one partition")
            self.kind_names.append(kind)
        return self.kind_names.index(kind)

    def _take_slot(self) -> int:
        if self.free:
            return self.free.pop()
        slot = len(self.ids)
        if slot >= len(self.vectors):
            self._grow(max(_FIRST_CAPACITY, 2 * len(self.vectors)))
        self.ids.append(None)
        return slot

    def _grow(self, capacity: int) -> None:
        def grown(a: np.ndarray, fill: float | bool = 0) -> np.ndarray:
            out = np.full((capacity, *a.shape[1:]), fill, dtype=a.dtype)
            out[: len(a)] = a
            return out
        self.vectors, self.live, self.kind = grown(self.vectors), grown(self.live, False), grown(self.kind)
        self.created, self.expires = grown(self.created), grown(self.expires, np.inf)
        if self.graph is not None:
            self.graph.resize_index(capacity)

    def _fit_graph(self) -> None:
        """Build the graph when the partition outgrows the exact scan; drop it below half that (so a
        partition at the edge does not rebuild on every write)."""
        if self.graph is None and len(self) > self.exact_max:
            import hnswlib  # only large partitions need it

            graph = hnswlib.Index(space="ip", dim=self.dims)
            graph.init_index(max_elements=max(len(self.vectors), 1), M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION)
            graph.set_num_threads(1)
            slots = np.flatnonzero(self.live)
            graph.add_items(self.vectors[slots], slots, num_threads=self.build_threads)
            self.graph = graph
        elif self.graph is not None and len(self) < self.exact_max // 2:
            self.graph = None
        elif self.graph is not None and self.graph.get_max_elements() < len(self.vectors):
            self.graph.resize_index(len(self.vectors))
