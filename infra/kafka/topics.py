"""The topic catalogue: every topic genloom uses, created at start with its final partitions.

Partition counts cannot grow later on the bundled broker (no CreatePartitions), and growing them on
real Kafka reshuffles keys, so they are decided once here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.enums import Modality

REQUESTS = "genloom.requests"
EVENTS_RAW = "genloom.events.raw"
EVENTS = "genloom.events"
CONTROL = "genloom.control"
MEMORY = "genloom.memory"
DLQ = "genloom.dlq"

#: header on a request in `genloom.requests` whose `accepted` event the gateway published itself,
#: so the routing agent does not publish a second one
ACCEPTED_HEADER = "genloom-accepted"
#: header on an event in `genloom.events` that its producer (the moderation gate) wrote into the job's
#: replay log itself, before it settled the input it came from: the fan-out passes it by
APPLIED_HEADER = "genloom-applied"


#: how long `genloom.requests` keeps a message (1 h): requests there still hold the personal data the
#: privacy stage removes, so they are kept only long enough for a stream processor that was down a
#: while to catch up. Kafka deletes whole segments, so also roll a segment at least this often.
REQUESTS_RETENTION_MS = 3_600_000


def jobs_topic(modality: Modality | str) -> str:
    """The topic a modality's workers consume."""
    return f"genloom.jobs.{Modality(modality).value}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    message: str
    purpose: str
    #: topic-level configs set when the topic is created (retention.ms, ...)
    configs: dict[str, str] = field(default_factory=dict)


def catalogue(partitions: int = 8, job_partitions: int = 4) -> list[TopicSpec]:
    """All topics with their partition counts."""
    topics = [
        TopicSpec(
            REQUESTS,
            partitions,
            "session (or job_id)",
            "GenerationRequest",
            "Jobs as submitted, before privacy, enrichment and routing. Holds raw prompts: kept 1 hour.",
            {"retention.ms": str(REQUESTS_RETENTION_MS), "segment.ms": str(REQUESTS_RETENTION_MS)},
        ),
        *(
            TopicSpec(
                jobs_topic(m),
                job_partitions,
                "session (or job_id)",
                "GenerationRequest",
                f"Validated {m.value} jobs, consumed by the {m.value} workers.",
            )
            for m in Modality
        ),
        TopicSpec(
            EVENTS_RAW,
            partitions,
            "job_id",
            "JobEvent",
            "Worker output before moderation.",
        ),
        TopicSpec(
            EVENTS,
            partitions,
            "job_id",
            "JobEvent",
            "Released events: the fan-out, webhooks and memory read these.",
        ),
        TopicSpec(
            CONTROL,
            1,
            "job_id",
            "ControlMessage",
            "Cancels; every worker reads all of it.",
        ),
        TopicSpec(
            MEMORY,
            partitions,
            "tenant/user (scoped)",
            "MemoryCommand",
            "Feedback and erasure of users' memory, in order per user. Feedback text is redacted only by the memory"
            " writer: kept 1 hour.",
            {"retention.ms": str(REQUESTS_RETENTION_MS), "segment.ms": str(REQUESTS_RETENTION_MS)},
        ),
        TopicSpec(
            DLQ,
            1,
            "original key",
            "DeadLetter",
            "Messages a consumer rejected, with the reason.",
        ),
    ]
    return topics
