"""`genloom topics` against the real broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from infra.procs import free_port

pytestmark = pytest.mark.integration


def topics(bootstrap: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.cli.main", "topics", "--bootstrap", bootstrap],
                          env=dict(os.environ, COLUMNS="250", NO_COLOR="1"), capture_output=True, text=True,
                          timeout=120)


def test_topics_lists_the_catalogue_with_partitions(kafka_bootstrap):
    result = topics(kafka_bootstrap)
    assert result.returncode == 0, result.stderr
    rows = {m.group(1): (int(m.group(2)), int(m.group(3)))
            for m in re.finditer(r"(genloom\.[a-z.]+)\s*│\s*(\d+)\s*│\s*(\d+)", result.stdout)}
    assert len(rows) == 10 and rows["genloom.memory"] == (8, 8)
    assert rows["genloom.requests"] == (8, 8) and rows["genloom.jobs.text"] == (4, 4)
    assert rows["genloom.control"] == (1, 1)
    assert re.search(r"genloom\.jobs\.image\s*│.*genloom-workers-image", result.stdout)


def test_topics_without_a_broker_says_where_it_looked():
    bootstrap = f"127.0.0.1:{free_port()}"
    result = topics(bootstrap)
    assert result.returncode == 1
    assert f"cannot reach Kafka at {bootstrap}" in result.stderr and "Traceback" not in result.stderr


async def test_a_restarted_brokers_auto_created_topic_is_recreated_with_the_catalogue_count():
    """After a bundled broker restart, a component that reconnects first can auto-create a topic with the
    broker's default partition count; the restart path recreates it, while a normal start refuses it."""
    from infra.kafka.broker import LocalBroker
    from infra.kafka.clients import TopicMismatch, ensure_topics
    from infra.kafka.topics import TopicSpec

    def spec(partitions: int) -> TopicSpec:
        return TopicSpec("genloom.test.recreated", partitions, "job id", "m", "test")

    with LocalBroker() as broker:
        assert await ensure_topics(broker.bootstrap, [spec(4)]) == ["genloom.test.recreated"]
        with pytest.raises(TopicMismatch):
            await ensure_topics(broker.bootstrap, [spec(1)])
        assert await ensure_topics(broker.bootstrap, [spec(1)], recreate_mismatched=True) == ["genloom.test.recreated"]
        assert await ensure_topics(broker.bootstrap, [spec(1)]) == []  # now it matches


def test_topics_create_makes_the_catalogue_on_an_empty_broker_once():
    """`genloom topics --create`: the init step of deploy/compose.yaml and the Helm chart."""
    from infra.kafka.broker import LocalBroker

    with LocalBroker() as broker:
        env = dict(os.environ, COLUMNS="250", NO_COLOR="1", GENLOOM_TOPICS_JOB_PARTITIONS="2")
        argv = [sys.executable, "-m", "infra.cli.main", "topics", "--create", "--bootstrap", broker.bootstrap]
        first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        assert "created 10 topic(s)" in first.stdout
        assert re.search(r"genloom\.jobs\.text\s*│\s*2\s*│\s*2", first.stdout)
        again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "none missing" in again.stdout
        mismatch = subprocess.run(argv, env=dict(env, GENLOOM_TOPICS_JOB_PARTITIONS="3"), capture_output=True,
                                  text=True, timeout=120)
        assert mismatch.returncode == 1 and "the catalogue says 3" in mismatch.stderr
        assert "Traceback" not in mismatch.stderr
