"""Read-only views of the cluster for the CLI and the local stack: partitions per topic, consumer lag, and the
partition holding the most records."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from infra.settings import TopicSettings

from .clients import security_args, start_client
from .topics import CONTROL, DLQ, EVENTS, EVENTS_RAW, REQUESTS, catalogue

#: the consumer group that reads each topic (the fan-out shares the streams group)
GROUPS = {
    REQUESTS: "genloom-streams",
    EVENTS_RAW: "genloom-moderation",
    EVENTS: "genloom-streams",
}


def group_for(topic: str) -> str | None:
    if topic.startswith("genloom.jobs."):
        return "genloom-workers-" + topic.rsplit(".", 1)[1]
    if topic in (CONTROL, DLQ):
        return None
    return GROUPS.get(topic)


@dataclass(frozen=True)
class TopicRow:
    name: str
    partitions: int | None
    expected: int
    group: str | None
    lag: int | None
    purpose: str


async def topic_report(bootstrap: str, settings: TopicSettings) -> list[TopicRow]:
    """Partition counts and, per topic, how far its consumer group is behind.

    On the bundled broker the end offsets it reports can trail by up to one record batch, so lag
    is approximate there.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security_args())
    await start_client(admin, bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **security_args())
    await start_client(probe, bootstrap)
    try:
        existing = set(await admin.list_topics())
        specs = catalogue(settings.partitions, settings.job_partitions)
        described = {d["topic"]: len(d["partitions"])
                     for d in await admin.describe_topics([s.name for s in specs if s.name in existing])}
        rows = []
        for spec in specs:
            count = described.get(spec.name)
            group = group_for(spec.name)
            lag = None
            if count and group:
                tps = [TopicPartition(spec.name, p) for p in range(count)]
                ends = await probe.end_offsets(tps)
                committed = await admin.list_consumer_group_offsets(group, partitions=tps)
                lag = sum(max(0, ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0))
                          for tp in tps)
            rows.append(TopicRow(spec.name, count, spec.partitions, group, lag, spec.purpose))
        return rows
    finally:
        await probe.stop()
        await admin.close()


async def end_offsets(bootstrap: str, partitions: dict[str, int]) -> dict[TopicPartition, int]:
    """Where each partition of `partitions` (topic -> partition count) ends. On the bundled broker that is
    where its last record batch starts, plus one: as many as the batches the partition holds when each
    record went alone (a token event at a time), more otherwise, so never fewer than the batches."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **security_args())
    await start_client(probe, bootstrap)
    try:
        return await probe.end_offsets([TopicPartition(t, p) for t, count in partitions.items() for p in range(count)])
    finally:
        await probe.stop()


def fullest_partition(ends: dict[TopicPartition, int]) -> tuple[TopicPartition | None, int]:
    """The partition of `ends` (`end_offsets`) that ends furthest, and where (None, 0 when none holds a record)."""
    tp, end = max(ends.items(), key=lambda item: item[1], default=(None, 0))
    return (tp, end) if end > 0 else (None, 0)


async def lagging_groups(bootstrap: str, ends: dict[TopicPartition, int]) -> list[str]:
    """The consumer groups that have committed an offset below the end of one of the partitions of `ends`
    (`end_offsets`): what they still have to read. A group that committed nothing on a partition (it does
    not read it) does not count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security_args())
    await start_client(admin, bootstrap)
    try:
        behind = []
        for group, *_ in await admin.list_consumer_groups():
            committed = await admin.list_consumer_group_offsets(group, partitions=list(ends))
            if any(0 <= meta.offset < ends.get(tp, 0) for tp, meta in committed.items() if meta is not None):
                behind.append(group)
        return sorted(behind)
    finally:
        await admin.close()
