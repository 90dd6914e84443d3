"""Session fixtures: the real bundled Kafka broker, a real redis-server and (for the memory store
tests that ask for it) a real Cassandra 2.1, each on a free loopback port, started once and stopped
by PID. No mocks of any."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path
from typing import NoReturn

import pytest

from infra.kafka.broker import LocalBroker
from infra.kafka.clients import ensure_topics
from infra.kafka.topics import catalogue
from infra.redis.server import LocalRedis

try:  # one torch thread in tests (two collapse under load on these machines)
    import torch

    torch.set_num_threads(1)
except ImportError:  # the core tests do not need torch
    pass

#: consumer timings that make group joins take about a second on the bundled broker
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}
#: the same for faust processes started by tests
FAST_STREAMS_ENV = {
    "GENLOOM_STREAMS_SESSION_TIMEOUT_S": "2",
    "GENLOOM_STREAMS_HEARTBEAT_S": "0.5",
    "GENLOOM_STREAMS_REBALANCE_TIMEOUT_S": "5",
    "GENLOOM_KAFKA_SESSION_TIMEOUT_MS": "2000",
    "GENLOOM_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
}


#: the request signing key of the test stack: the streams process and the edge gateways use it
REQUEST_SIGNING_KEY = b"test-request-signing-key"
#: the key the test stack encrypts placeholder mappings with (streams process and gateways)
PRIVACY_KEY = "test-privacy-key"
#: where the session's background processes (and a test that turns tracing on here) write their spans
TRACE_FILE = Path(tempfile.gettempdir()) / f"genloom-test-traces-{os.getpid()}.jsonl"
os.environ.setdefault("GENLOOM_PRIVACY_KEY", PRIVACY_KEY)
#: state of the test stack (the memory store and vector index): one fresh folder per test run, shared by the
#: streams process and the in-process gateways, never the user's ~/.genloom
if "GENLOOM_HOME" not in os.environ:
    import tempfile

    os.environ["GENLOOM_HOME"] = tempfile.mkdtemp(prefix="genloom-test-home-")


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """host:port of a bundled broker with every catalogue topic created."""
    import asyncio

    with LocalBroker() as broker:
        asyncio.run(ensure_topics(broker.bootstrap, catalogue()))
        yield broker.bootstrap


@pytest.fixture(scope="session")
def redis_url():
    """URL of a throwaway redis-server (never the machine's shared one)."""
    with LocalRedis() as server:
        yield server.url


@pytest.fixture(scope="session")
async def _doorbell(redis_url):
    """This process rings the doorbell of every topic it produces to, as each process of `genloom up` does
    (there every one has GENLOOM_REDIS_URL): the stack processes a test starts wait for rings, so a record
    from an in-process worker or a test-played producer would otherwise wait their idle poll (a second).
    Ringing only: this process's own consumers stay unpaced."""
    from infra.kafka import doorbell

    bell = doorbell.Doorbell(redis_url)
    previous = doorbell.register(bell)
    yield bell
    doorbell.register(previous)
    await bell.close()


@pytest.fixture(autouse=True)
def _rings_when_producing(request):
    """A test on the session's broker produces with the doorbell of `_doorbell`."""
    if "kafka_bootstrap" in request.fixturenames:
        request.getfixturevalue("_doorbell")


def service_unavailable(reason: str) -> NoReturn:
    """A CI run (CI=true) without a service its tests need is misconfigured: fail. A workstation may
    simply lack it: skip, with the reason."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"a required test service cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cassandra_node(tmp_path_factory):
    """A throwaway Cassandra 2.1 (infra/cassandra/server.py): `.hosts`, `.port`. Started once, only when a
    test asks for it (about 7 s and 870 MB), stopped by PID at the end of the session, its data deleted."""
    try:
        import cassandra  # noqa: F401
    except ImportError:
        service_unavailable("cassandra-driver is not installed: pip install -e '.[cassandra]'")
    from infra.cassandra.server import CassandraNotInstalled, LocalCassandra

    log_path = tmp_path_factory.mktemp("cassandra") / "cassandra.log"
    with open(log_path, "wb") as log:
        try:
            server = LocalCassandra(log=log)
        except CassandraNotInstalled as exc:
            service_unavailable(str(exc))
        try:
            server.start()
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"Cassandra did not start ({exc}); its log:\n{log_path.read_text()[-4000:]}") from exc
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def blob_dir(tmp_path_factory):
    """The test stack's blob store folder: in-process workers write artifacts there, the gateway and the
    moderation gate read them."""
    return tmp_path_factory.mktemp("blobs")


@pytest.fixture(scope="session")
def moderation_gate(kafka_bootstrap, redis_url, tmp_path_factory, blob_dir):
    """`python -m workers moderation` with the default settings, as `genloom up` runs it: moderation is
    on by default, so workers publish to genloom.events.raw and only this gate releases their output
    (artifacts too: it reads them from `blob_dir`)."""
    env = dict(os.environ, GENLOOM_KAFKA_BOOTSTRAP=kafka_bootstrap, GENLOOM_REDIS_URL=redis_url,
               GENLOOM_BLOB_DIR=str(blob_dir), **FAST_STREAMS_ENV)
    yield from _process(["workers", "moderation"], env, tmp_path_factory.mktemp("moderation") / "gate.log")


@pytest.fixture(scope="session")
def streams_process(kafka_bootstrap, redis_url, tmp_path_factory, moderation_gate):
    """`python -m streams` (the preparation chain, privacy and moderation on, and the fan-out) as a real faust
    worker process, beside the moderation gate."""
    env = dict(os.environ, GENLOOM_KAFKA_BOOTSTRAP=kafka_bootstrap, GENLOOM_REDIS_URL=redis_url,
               GENLOOM_REQUEST_SIGNING_KEY=REQUEST_SIGNING_KEY.decode(), GENLOOM_PRIVACY_KEY=PRIVACY_KEY, **FAST_STREAMS_ENV,
               # tests write records with made-up old timestamps: a sweep would end them mid-test
               # (the reconciler is tested on its own, tests/integration/test_reconciler.py)
               GENLOOM_RECONCILER_ENABLED="false",
               # the semantic cache answers only the cache test's tenant: other tests' greedy chats must reach
               # their (test-played) workers; its threshold is the one tests/integration/test_cache_gateway.py uses
               GENLOOM_SEMANTIC_CACHE_TENANTS_ONLY="t-cache", GENLOOM_SEMANTIC_CACHE_THRESHOLD="0.85")
    yield from _process(["streams"], env, tmp_path_factory.mktemp("streams") / "streams.log")


def _process(module_args: list[str], env: dict[str, str], log_path):
    """`python -m <module_args>` as a session's background process, logging to `log_path`; stopped by PID at
    the end, its log's tail printed if it died."""
    import subprocess
    import sys

    from infra.procs import free_port, stop_process

    metrics_port = free_port()  # its /metrics, as `genloom up` serves every process's (tests scrape it)
    env = {"GENLOOM_TRACING_EXPORTER": "file", "GENLOOM_TRACING_FILE": str(TRACE_FILE), **env,
           "GENLOOM_METRICS_PORT": str(metrics_port)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", *module_args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    proc.metrics_port = metrics_port
    try:
        yield proc
    finally:
        stop_process(proc, timeout=10)
        if proc.returncode not in (0, -15, None):
            print(log_path.read_text()[-4000:])


@pytest.fixture(scope="session")
async def producer(kafka_bootstrap):
    """A plain aiokafka producer on the session broker."""
    from tests.kafka_helpers import started_producer

    p = await started_producer(kafka_bootstrap)
    yield p
    await p.stop()
