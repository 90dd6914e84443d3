"""The memory store's contract: what is kept about a user, and the operations every backend offers.

Everything is scoped by (tenant, user): no call reads or writes across that pair, except the
retention sweep. Text kept here is what the privacy stage let through (placeholders, never values).
Times are Unix seconds. `expires_at` (None: never) is when the retention period ends: the sweep
deletes rows past it (Cassandra also gets a native TTL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

#: what a fact is: a stable fact about the user, or a preference that shapes answers
FactKind = Literal["fact", "preference"]


@dataclass(frozen=True)
class Owner:
    tenant: str
    user: str


@dataclass
class Profile:
    tenant: str
    user: str
    #: consent: off means nothing is stored and nothing retrieved for this user
    memory_enabled: bool = True
    #: free-form preferences set by the user or learned ("answer_length": "short", "image_style": "watercolour")
    preferences: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class Interaction:
    """One job of the user: its (redacted) prompt, and its answer once completed."""

    id: str  # the job's internal id
    tenant: str
    user: str
    session: str | None
    modality: str
    prompt: str
    answer: str | None = None
    created_at: float = 0.0
    importance: float = 0.5
    expires_at: float | None = None


@dataclass
class Fact:
    """A subject–relation–object triple of the knowledge graph, with time and source."""

    id: str
    tenant: str
    user: str
    subject: str  # "user" for facts about the user
    relation: str  # "favourite_colour", "allergic_to", "prefers_answer_length", ...
    object: str  # "teal"
    text: str  # the fact as a sentence for a prompt: "The user's favourite colour is teal."
    kind: FactKind = "fact"
    source: str = "chat"  # "chat" (found in an interaction), "feedback", "profile"
    source_job: str | None = None
    created_at: float = 0.0
    importance: float = 0.5
    #: the newer fact that replaced this one, and when (None: current)
    superseded_by: str | None = None
    superseded_at: float | None = None
    expires_at: float | None = None


@dataclass
class Feedback:
    id: str
    tenant: str
    user: str
    job_id: str
    rating: int | None = None  # -1, 0, 1 (or 1..5 mapped by the API)
    correction: str | None = None
    preference: str | None = None
    created_at: float = 0.0
    expires_at: float | None = None


@dataclass
class AuditRecord:
    """What an erase or a retention sweep removed: counts per store, never content."""

    id: str
    tenant: str
    user: str | None
    action: Literal["erase", "retention"]
    counts: dict[str, int]
    at: float


class MemoryStore(Protocol):
    """Profiles, interactions, facts, feedback and the audit log of one deployment."""

    async def start(self) -> None:
        """Connect and create the schema if missing (idempotent)."""

    async def close(self) -> None: ...

    async def get_profile(self, tenant: str, user: str) -> Profile | None: ...

    async def put_profile(self, profile: Profile) -> None: ...

    async def put_interaction(self, item: Interaction) -> None:
        """Insert or replace by (tenant, user, id): writing the same job twice keeps one row."""

    async def complete_interaction(self, tenant: str, user: str, id: str, answer: str) -> bool:
        """Set the answer of a stored interaction; False when there is none with that id."""

    async def get_interactions(self, tenant: str, user: str, ids: list[str]) -> list[Interaction]: ...

    async def recent_interactions(self, tenant: str, user: str, limit: int) -> list[Interaction]:
        """Newest first."""

    async def put_fact(self, fact: Fact) -> None:
        """Insert or replace by (tenant, user, id)."""

    async def supersede(self, tenant: str, user: str, ids: list[str], by: str, at: float) -> int:
        """Mark facts as replaced by the fact `by`; the number marked."""

    async def facts(self, tenant: str, user: str, *, current_only: bool = True) -> list[Fact]:
        """The user's facts, newest first; superseded ones too unless `current_only`."""

    async def get_facts(self, tenant: str, user: str, ids: list[str]) -> list[Fact]: ...

    async def put_feedback(self, item: Feedback) -> None: ...

    async def feedback(self, tenant: str, user: str) -> list[Feedback]: ...

    async def export(self, tenant: str, user: str) -> dict:
        """Everything kept about the user, as JSON-ready dicts per kind (profile, interactions, facts, feedback)."""

    async def erase(self, tenant: str, user: str) -> dict[str, int]:
        """Delete everything of the user; rows deleted per kind. Erasing twice returns zeros."""

    async def sweep(self, now: float) -> dict[str, int]:
        """Delete rows whose `expires_at` has passed; rows deleted per kind."""

    async def put_audit(self, record: AuditRecord) -> None: ...

    async def audits(self, tenant: str, user: str | None = None) -> list[AuditRecord]: ...
