"""The encrypted placeholder mappings in real Redis, and the gateway's restoration over them."""

from __future__ import annotations

import json

import pytest

from gateway.restore import Restoration
from infra.redis import keys
from infra.redis.client import connect
from infra.redis.jobstore import Entry
from infra.redis.redactions import RedactionVault
from infra.settings.streams import PrivacySettings
from schemas.enums import EventType

pytestmark = pytest.mark.integration
MAPPING = {"<PERSON_1>": "Ada Lovelace", "<EMAIL_1>": "ada@example.org"}


@pytest.fixture
async def redis(redis_url):
    client = connect(redis_url)
    yield client
    await client.aclose()


async def test_mappings_are_stored_encrypted_expiring_and_bound_to_their_job(redis):
    vault = RedactionVault(redis, b"secret", ttl_s=60)
    await vault.put_many({"rd-1": MAPPING, "rd-empty": {}})
    raw = await redis.get(keys.redactions("rd-1"))
    assert b"Ada" not in raw and b"ada@" not in raw and b"PERSON" not in raw
    assert 0 < await redis.ttl(keys.redactions("rd-1")) <= 60
    assert not await redis.exists(keys.redactions("rd-empty"))
    assert await vault.get("rd-1") == MAPPING
    assert await RedactionVault(redis, b"another key").get("rd-1") == {}  # wrong key: nothing
    await redis.set(keys.redactions("rd-2"), raw)  # copied onto another job: does not open
    assert await vault.get("rd-2") == {} and await vault.get("rd-missing") == {}


def token(i: int, text: str) -> Entry:
    return Entry(i, EventType.TOKEN, json.dumps({"job_id": "rd-3", "seq": i, "source": "worker", "type": "token",
                                                 "text": text, "tokens": 1}).encode())


async def test_followed_entries_are_restored_across_deltas_unless_the_tenant_opted_out(redis):
    vault = RedactionVault(redis, b"secret")
    await vault.put_many({"rd-3": MAPPING})
    settings = PrivacySettings(key="secret", restore_off_tenants="plain")
    entries = [token(1, "Dear <PERS"), token(2, "ON_1> (<EMAIL_"), token(3, "1>) and <PERS"),
               Entry(4, EventType.COMPLETED, json.dumps({"job_id": "rd-3", "seq": 4, "source": "worker",
                                                         "type": "completed", "text": "Dear <PERSON_1>"}).encode())]
    for tenant, expected, done in (("t", "Dear Ada Lovelace (ada@example.org) and <PERS", "Dear Ada Lovelace"),
                                   ("plain", "Dear <PERSON_1> (<EMAIL_1>) and <PERS", "Dear <PERSON_1>")):
        restorer = Restoration(vault, settings).follower("rd-3", tenant)
        shown = [e for entry in entries for e in await restorer.entries(entry)]
        assert "".join(json.loads(e.data)["text"] for e in shown if e.type == EventType.TOKEN) == expected
        assert json.loads(shown[-1].data)["text"] == done and shown[-1].terminal


async def test_the_request_topic_is_created_with_a_short_retention(kafka_bootstrap):
    """The raw prompts on genloom.requests are kept 1 hour. The bundled broker stores the setting but does
    not delete old messages (see docs/security.md); a Kafka cluster does."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from infra.kafka.topics import REQUESTS, REQUESTS_RETENTION_MS

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, REQUESTS)])
    finally:
        await admin.close()
    configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
    assert configs["retention.ms"] == str(REQUESTS_RETENTION_MS) == "3600000"
