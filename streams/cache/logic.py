"""Pure semantic-cache decisions: which jobs may use it, what a cached answer is scoped by, how a
match is found, and the events a hit ends its job with.

Served modalities: chat only. A chat answer is small text that a hit returns whole. Speech is
deterministic too, but its answer is the audio itself (about 44 KB per second, inline in events),
which would crowd a byte-bounded cache for a job that synthesises at 0.18x real time anyway. Seeded
image and video jobs are deterministic as well, but their artifacts live in the blob store under the
job that made them and expire with it; reusing one needs a copy per job (or reference counting),
left for later.

Scope: two prompts are compared by meaning only inside one scope, and a scope matches exactly on
everything else that changes the answer: the tenant (answers never cross tenants), the modality,
the served model, the embedding model (vectors of two models never compare), every message other
than the last user turn (system prompt, earlier turns, a prefilled assistant turn: the conversation
so far is context the answer depends on), the position of the last user turn, max_tokens (it can
cut an answer), stop strings, and, for sampled requests that opted in, temperature, top_p and seed.
Left out: job id, user, session, priority, deadline, trace, webhook, metadata, submission time.

Key terms: the embedded prompt's numbers, negations, names (capitalised words inside a sentence)
and quoted text are part of the scope too, so they must match exactly. The embedding model is
nearly blind to them: on bench/data/cache_paraphrases.json, "Is it safe to eat raw eggs?" and "Is
it not safe to eat raw eggs?" score 0.99, "capital of Austria" and "of Australia" 0.9; no similarity
threshold alone keeps such near misses apart and still reuses paraphrases (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from schemas import AnyRequest, TextRequest
from schemas.enums import CacheMode, EventSource, FinishReason
from schemas.events import CacheInfo, Completed, JobEvent, ModelInfo, Started, Timings, TokenDelta, Usage

from ..embedding.logic import chat_text, last_user_index

#: bump when the scope's fields change: old entries then stop matching instead of answering wrongly
SCOPE_VERSION = 1
#: the first seq of a hit's events (source `streams`): seq 0 is the `accepted` the routing agent
#: publishes for requests written straight onto `genloom.requests`
FIRST_SEQ = 1
#: finish reasons whose answer is kept; a content-filtered answer is cut short and never reused
STORABLE = frozenset({FinishReason.STOP, FinishReason.LENGTH})


#: words that turn a statement around; any of them (or an n't) counts as one term, "not"
_NEGATIONS = frozenset({"not", "no", "never", "without", "nor", "none", "cannot"})
#: words the embedding barely tells from their opposite, yet they change the answer: the marked
#: side of general pairs (number words and ordinals past one and first; low/high, off/on, worst/best,
#: cons/pros, uninstall/install, ...). Only one side is listed, so a paraphrase that swaps "largest"
#: for "biggest" still matches, while "high in iron" and "low in iron" differ by one term
_PIVOTS = frozenset("""
    two three four five six seven eight nine ten eleven twelve twenty thirty fifty hundred thousand
    million billion half quarter double twice second third fourth fifth last previous
    off low lower less least fewer bad worse worst cons disadvantages drawbacks after below under
    decrease cold late uninstall disable delete sell decline exclude export decrypt decode false
    smallest smaller shortest shorter lowest cheapest cheaper youngest farthest furthest slowest weakest
    minimum min
    """.split())
_WORD = re.compile(r"[^\W\d_][\w'’-]*|\d+(?:[.,]\d+)*")
_QUOTED = re.compile(r"(?<![^\W\d_])[\"'‘“]([^\"'’”]{1,200})[\"'’”](?![^\W\d_])")


def key_terms(text: str) -> list[str]:
    """The terms of a prompt that must match exactly for a cached answer to serve it, in order of
    first appearance (order matters: Celsius to Fahrenheit is not Fahrenheit to Celsius): numbers,
    negations, pivot words (see `_PIVOTS`), names (capitalised words that do not start a sentence,
    "I" aside) and quoted text."""
    terms: dict[str, None] = {}  # ordered set
    for match in _WORD.finditer(text):  # hot loop: one pass over the prompt
        word = match.group()
        lower = word.lower()
        if lower in _NEGATIONS or lower.endswith(("n't", "n’t")):
            terms["not"] = None
        elif word[0].isdigit() or lower in _PIVOTS:
            terms[lower] = None
        elif word[0].isupper() and lower != "i":
            before = text[:match.start()].rstrip()
            if before and before[-1] not in ".?!:;\n\"'“‘(":
                terms[re.split("['’]", lower, maxsplit=1)[0]] = None
    for quoted in _QUOTED.findall(text):
        terms[f"'{quoted.lower()}'"] = None
    return list(terms)


@dataclass(frozen=True)
class TenantPolicy:
    """Per-tenant switches: tenants whose every job may use the cache, tenants it is off for, and (when
    not empty) the only tenants it serves (a canary rollout)."""

    opt_in: frozenset[str] = frozenset()
    off: frozenset[str] = frozenset()
    only: frozenset[str] = frozenset()


def eligible(request: AnyRequest, policy: TenantPolicy) -> bool:
    """May this job be answered from the cache (and its answer stored)?

    Greedy chats may, by default; a sampled chat only when it (`cache: reuse`) or its tenant opted in
    (then it gets some earlier sample's answer). Never a job with `cache: off` or of a tenant the
    cache is off for, and never another modality (see the module docstring).
    """
    if not isinstance(request, TextRequest):
        return False
    if request.cache is CacheMode.OFF or request.tenant in policy.off:
        return False
    if policy.only and request.tenant not in policy.only:
        return False
    p = request.params
    if p.presence_penalty or p.frequency_penalty or p.logit_bias or p.logprobs:
        return False  # a cached answer holds no logprobs, and its scope does not hold these settings
    if p.response_format is not None or p.tools:
        return False  # the answer must follow the request's own schema or tools
    return (request.params.temperature == 0.0 or request.cache is CacheMode.REUSE
            or request.tenant in policy.opt_in)


def scope_of(request: TextRequest, embedding_model: str, terms: list[str] | None = None) -> str:
    """The scope key (hex SHA-256) of a chat; see the module docstring for what it holds (`terms`:
    the key terms of the embedded text, computed here when not given)."""
    params = request.params
    last = last_user_index(request)
    context = [[m.role.value, m.name, m.content] for i, m in enumerate(params.messages) if i != last]
    sampled = params.temperature != 0.0
    fields = {
        "v": SCOPE_VERSION, "tenant": request.tenant, "modality": request.modality.value, "model": request.model,
        "embedding": embedding_model, "context": context, "at": last, "max_tokens": params.max_tokens,
        "stop": params.stop, "temperature": params.temperature,
        "top_p": params.top_p if sampled else None, "seed": params.seed if sampled else None,
        "terms": key_terms(chat_text(request)) if terms is None else terms,
    }
    if params.raw:  # the same words continued, not answered: another scope (chats keep their keys)
        fields["raw"] = True
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Answer:
    """What is stored of a completed job: enough to replay its answer."""

    #: the source job's internal (tenant-scoped) id: the entry's id in both tiers
    job_id: str
    text: str
    finish_reason: FinishReason
    model: ModelInfo
    created_at: float
    #: the id the source job's tenant gave it (what a hit shows as its source; hits never cross tenants)
    client_job_id: str | None = None

    @property
    def source_job(self) -> str:
        """The source job as its tenant knows it (an entry stored before ids were scoped has only one id)."""
        return self.client_job_id or self.job_id

    def to_json(self) -> bytes:
        return json.dumps({"job_id": self.job_id, "client_job_id": self.client_job_id, "text": self.text,
                           "finish_reason": self.finish_reason.value, "model": self.model.model_dump(mode="json"),
                           "created_at": self.created_at}, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Answer:
        data = json.loads(raw)
        return cls(job_id=data["job_id"], text=data["text"], finish_reason=FinishReason(data["finish_reason"]),
                   model=ModelInfo.model_validate(data["model"]), created_at=float(data["created_at"]),
                   client_job_id=data.get("client_job_id"))

    @property
    def nbytes(self) -> int:
        """What the entry costs in a tier: its text, the vector (384 float32) and some bookkeeping."""
        return len(self.text.encode()) + 384 * 4 + 256


@dataclass(frozen=True)
class Hit:
    answer: Answer
    similarity: float


def best(vectors: np.ndarray, query: np.ndarray, threshold: float) -> tuple[int, float] | None:
    """Row of `vectors` most similar to `query` (all L2-normalised: a dot product is the cosine) and
    its similarity, or None when none reaches `threshold`."""
    if len(vectors) == 0:
        return None
    scores = vectors @ query
    row = int(np.argmax(scores))
    score = float(scores[row])
    return (row, score) if score >= threshold else None


def hit_events(request: TextRequest, hit: Hit, now: float | None = None) -> list[JobEvent]:
    """The events that end a job answered from the cache: the same types a worker emits (started, one
    token delta, completed), marked with `cache`, and usage saying no tokens were generated."""
    now = time.time() if now is None else now
    info = CacheInfo(similarity=max(-1.0, min(1.0, hit.similarity)), source_job=hit.answer.source_job)
    queued = max(0.0, now - request.submitted_at)
    common = {"job_id": request.job_id, "source": EventSource.STREAMS, "ts": now}
    events: list[JobEvent] = [Started(seq=FIRST_SEQ, worker="cache", model=hit.answer.model, queue_s=queued,
                                      cache=info, **common)]
    if hit.answer.text:
        events.append(TokenDelta(seq=FIRST_SEQ + 1, text=hit.answer.text, tokens=0, **common))
    events.append(Completed(
        seq=FIRST_SEQ + len(events), finish_reason=hit.answer.finish_reason,
        usage=Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0),
        timings=Timings(queue_s=queued, ttft_s=0.0, generation_s=0.0, total_s=queued),
        text=hit.answer.text, cache=info, **common))
    return events


@dataclass
class _Local:
    vector: np.ndarray
    answer: Answer
    nbytes: int


class LocalTier:
    """The in-process tier: LRU over all scopes, bounded in entries and in bytes, entries expire
    `ttl_s` after they were made. Not thread-safe: used from the event loop only."""

    def __init__(self, *, max_entries: int, max_bytes: int, ttl_s: float) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.nbytes = 0
        self._lru: OrderedDict[tuple[str, str], _Local] = OrderedDict()  # oldest use first
        self._scopes: dict[str, dict[str, _Local]] = {}
        self._matrices: dict[str, tuple[list[str], np.ndarray]] = {}  # per scope, rebuilt after a change

    def __len__(self) -> int:
        return len(self._lru)

    def lookup(self, scope: str, query: np.ndarray, threshold: float, now: float) -> Hit | None:
        entries = self._scopes.get(scope)
        if not entries:
            return None
        for job_id in [j for j, e in entries.items() if now - e.answer.created_at > self.ttl_s]:
            self._remove(scope, job_id)
        if scope not in self._scopes:
            return None
        ids, matrix = self._matrix(scope)
        found = best(matrix, query, threshold)
        if found is None:
            return None
        job_id = ids[found[0]]
        self._lru.move_to_end((scope, job_id))
        return Hit(self._scopes[scope][job_id].answer, found[1])

    def holds(self, scope: str, now: float) -> bool:
        """Whether `scope` has an unexpired entry (`lookup` could find one)."""
        return any(now - e.answer.created_at <= self.ttl_s for e in self._scopes.get(scope, {}).values())

    def put(self, scope: str, vector: np.ndarray, answer: Answer, now: float) -> None:
        if now - answer.created_at > self.ttl_s or answer.nbytes > self.max_bytes:
            return
        if (scope, answer.job_id) in self._lru:
            self._remove(scope, answer.job_id)
        entry = _Local(np.asarray(vector, dtype=np.float32), answer, answer.nbytes)
        self._lru[(scope, answer.job_id)] = entry
        self._scopes.setdefault(scope, {})[answer.job_id] = entry
        self._matrices.pop(scope, None)
        self.nbytes += entry.nbytes
        while len(self._lru) > self.max_entries or self.nbytes > self.max_bytes:
            (old_scope, old_id), _ = next(iter(self._lru.items()))
            self._remove(old_scope, old_id)

    def forget(self, job_ids: set[str]) -> int:
        """Drop every entry whose answer came from one of these jobs (a user's data is erased); how many."""
        gone = [key for key in self._lru if key[1] in job_ids]
        for scope, job_id in gone:
            self._remove(scope, job_id)
        return len(gone)

    def _remove(self, scope: str, job_id: str) -> None:
        entry = self._lru.pop((scope, job_id))
        self.nbytes -= entry.nbytes
        entries = self._scopes[scope]
        del entries[job_id]
        if not entries:
            del self._scopes[scope]
        self._matrices.pop(scope, None)

    def _matrix(self, scope: str) -> tuple[list[str], np.ndarray]:
        built = self._matrices.get(scope)
        if built is None:
            entries = self._scopes[scope]
            built = (list(entries), np.stack([e.vector for e in entries.values()]))
            self._matrices[scope] = built
        return built
