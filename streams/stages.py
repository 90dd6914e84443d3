"""The contract between the request-preparation stages (privacy, embedding, enrichment, cache).

A stage takes a batch of `Item`s (everything the preparation processor polled at once) and
works on the ones still `pending`: it may replace `item.request` (redaction), attach data for later
stages (`item.embedding`), end the job (`item.end`: failed, or answered from the cache) or note
that it ran degraded (`item.degraded`). Stages never raise for one bad job: they end that job with
a stable code and go on. They are chained inside one processor by default (one Kafka hop for the
whole preparation), and each stage can also run as its own processor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from schemas import AnyRequest
from schemas.enums import ErrorCode
from schemas.events import JobEvent, MemoryUse


@dataclass
class Failure:
    """The job ends with a `failed` event."""

    code: ErrorCode
    message: str
    retryable: bool = False


@dataclass
class Answered:
    """The job ends without a worker: these events (started … completed) are published for it."""

    events: list[JobEvent]


@dataclass
class Item:
    request: AnyRequest
    #: the partition key the job message is published with
    key: bytes
    #: headers the job message carries on (the gateway's signature; re-signed after a change)
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    #: the prompt's embedding (float32, L2-normalised), set by the embedding stage
    embedding: object | None = None
    #: the embedding stage left the vector for after the job is sent: no stage's `run` reads it (the
    #: cache cannot answer from a scope that holds nothing, and stores the answer under it later)
    embedding_later: bool = False
    #: names of what was skipped because a dependency was down ("cache", "memory"): events say so
    degraded: list[str] = field(default_factory=list)
    #: values the privacy stage replaced, per entity type (counts only: the `prepared` event reports them)
    redactions: dict[str, int] = field(default_factory=dict)
    #: memories of the user the enrichment stage put into the prompt (the `prepared` event lists them)
    memories: list[MemoryUse] = field(default_factory=list)
    #: set by the stage that ended the job
    end: Failure | Answered | None = None

    @property
    def pending(self) -> bool:
        return self.end is None


class Stage(Protocol):
    #: short name used in settings, metrics and `degraded` notes: "privacy", "embedding", "cache"
    name: str

    async def run(self, items: list[Item]) -> None:
        """Work on `[i for i in items if i.pending]`, in place. Raises only for a bug."""
        ...

    # A stage after the embedding stage may also define `uses_embedding(item) -> bool`: whether it
    # reads `item.embedding` for this job. When every later stage of a chain says, the embedding stage
    # embeds only the jobs one of them will read (a sampled chat of a user without memory is never
    # embedded); a later stage that does not say gets every job embedded.
    #
    # Such a stage may also define `async needs_embedding_now(items) -> list[bool]`: per job it uses the
    # vector of, whether its `run` reads it (True) or only its `after_sent` does. A vector no `run` reads
    # is computed after the batch's messages are sent (`item.embedding_later`), off the job's path to its
    # worker. A stage that does not define it reads every vector it uses in `run`.
    #
    # Any stage may define `async after_sent(items) -> None`: work on the batch once its messages are
    # sent (they cannot change any more), run in chain order (`streams/prepare/chain.py: after_sent`).
