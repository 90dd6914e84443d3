"""Long-term memory end to end: the gateway, the streams process (preparation with enrichment, the
fan-out and the memory writer) on the real broker and Redis, the embedded SQLite store and vector
index; the test plays the text worker. What a user says is remembered for that user only, shapes
their next prompt, can be corrected, turned off, exported and erased."""

from __future__ import annotations

import uuid

import pytest

from infra.client import GenloomError
from infra.kafka.topics import jobs_topic
from schemas.events import Completed, Started
from schemas.requests import scoped_job_id
from tests.edge_helpers import read_until_idle, text_job, values, wait_for

pytestmark = pytest.mark.integration

A, B = "t-mem-a", "t-mem-b"


def _user(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"  # new users each run: the store outlives nothing, but be sure


async def _chat(client, worker, tenant: str, user: str | None, prompt: str, answer: str = "Noted.") -> dict:
    """Submit a chat through the preparation chain and play its worker to the end."""
    extra = {"user": user} if user else {}
    job = await client.submit(text_job(prompt, **extra))
    internal = scoped_job_id(tenant, job["id"])
    await wait_for(lambda: _status_at_least(client, job["id"]), timeout=30)
    await worker.emit(Started, internal, worker="test-worker", model={"id": "m", "device": "cpu", "dtype": "f32"})
    await worker.emit(Completed, internal, text=answer)
    await wait_for(lambda: _ended(client, job["id"]), timeout=30)
    return job


async def _status_at_least(client, job_id: str) -> bool:
    """The preparation processor has handled the job (its `prepared` event is recorded)."""
    job = await client.get(job_id)
    return job["last_event_id"] >= 2


async def _ended(client, job_id: str) -> bool:
    return (await client.get(job_id))["status"] == "completed"


async def _facts(client, user: str) -> list[dict]:
    return (await client.user_data(user))["facts"]


async def test_a_users_fact_is_remembered_used_for_them_only_superseded_and_erased(client_for, gateway_url_b,
                                                                                   worker, edge_redis):
    a, b = client_for(A, gateway_url_b), client_for(B, gateway_url_b)
    alice, bob = _user("alice"), _user("bob")
    first = await _chat(a, worker, A, alice, "By the way, my favourite colour is teal.")
    facts = await wait_for(lambda: _facts(a, alice), timeout=30)
    assert any("teal" in f["object"] for f in facts)
    assert (await a.user_data(alice))["interactions"][0]["answer"] == "Noted."

    # the next prompt of alice carries the fact; bob's (same tenant) and tenant B's alice's do not
    ask = "What colour should I paint my bedroom?"
    asked = await _chat(a, worker, A, alice, ask)
    used = (await a.get(asked["id"]))["memories"]
    assert any("teal" in m["text"] for m in used), used
    other = await _chat(a, worker, A, bob, ask)
    assert not any("teal" in m["text"] for m in (await a.get(other["id"]))["memories"])
    elsewhere = await _chat(b, worker, B, alice.replace("alice", "alice"), ask)
    assert (await b.get(elsewhere["id"]))["memories"] == []
    assert (await b.user_data(alice))["facts"] == []  # tenant B's "alice" is another user

    # a newer contradicting fact supersedes the old one, and only the newer one is used
    await _chat(a, worker, A, alice, "Actually my favourite colour is red now.")

    async def superseded():
        kept = await _facts(a, alice)
        old = [f for f in kept if "teal" in f["object"]]
        return old and old[0].get("superseded_by") and any("red" in f["object"] for f in kept)

    await wait_for(superseded, timeout=30)
    again = await _chat(a, worker, A, alice, ask)
    texts = [m["text"] for m in (await a.get(again["id"]))["memories"]]
    assert any("red" in t for t in texts) and not any("teal" in t for t in texts), texts

    # feedback on one's own job becomes a preference; on an unknown or another tenant's job: 404
    await a.feedback(first["id"], rating=1, preference="Please keep answers short.")
    await wait_for(lambda: _has(a, alice, "short"), timeout=30)
    for client, job_id in ((a, "no-such-job"), (b, first["id"])):
        with pytest.raises(GenloomError) as err:
            await client.feedback(job_id, rating=1)
        assert err.value.status == 404
    anonymous = await a.submit(text_job("no user here"))
    with pytest.raises(GenloomError) as err:
        await a.feedback(anonymous["id"], rating=-1)
    assert err.value.status == 400 and err.value.param == "job_id"

    # erasure: everything goes, counted; the second one finds nothing
    report = await a.erase_user(alice)
    assert report["status"] == "erased", report
    assert report["counts"]["memory_facts"] >= 2 and report["counts"]["vectors"] >= 1
    assert report["counts"]["jobs"] >= 4
    kept = await a.user_data(alice)
    assert kept["facts"] == kept["interactions"] == kept["feedback"] == [] and kept["jobs"] == []
    assert kept["erasures"] and kept["erasures"][0]["counts"] == report["counts"]
    with pytest.raises(GenloomError) as err:
        await a.get(first["id"])
    assert err.value.status == 404
    assert await edge_redis.exists(f"genloom:job:{{{scoped_job_id(A, first['id'])}}}:events") == 0
    twice = await a.erase_user(alice)
    assert twice["status"] == "erased" and not any(twice["counts"].values()), twice
    # bob was not touched
    assert (await a.user_data(bob))["interactions"]


async def _has(client, user: str, word: str) -> bool:
    return any(word in f["text"].lower() or word in f["object"].lower() for f in await _facts(client, user))


async def test_memory_off_for_a_user_stores_and_retrieves_nothing(client_for, gateway_url_b, worker):
    a = client_for(A, gateway_url_b)
    carol = _user("carol")
    status = await a.set_memory(carol, False)
    assert status["enabled"] is False and (await a._call("GET", f"/v1/users/{carol}/memory"))["enabled"] is False
    await _chat(a, worker, A, carol, "My favourite colour is green.")
    asked = await _chat(a, worker, A, carol, "What colour do I like?")
    assert (await a.get(asked["id"]))["memories"] == []
    kept = await a.user_data(carol)
    assert kept["interactions"] == [] and kept["facts"] == []
    assert kept["profile"]["memory_enabled"] is False


async def test_no_topic_after_the_gateway_carries_the_callers_user_id(client_for, gateway_url_b, worker,
                                                                      kafka_bootstrap):
    a = client_for(A, gateway_url_b)
    user = f"dave.{uuid.uuid4().hex[:6]}@example.com"
    job = await a.submit(text_job("hello there", user=user))
    await wait_for(lambda: _status_at_least(a, job["id"]), timeout=30)
    published = values(await read_until_idle(kafka_bootstrap, jobs_topic("text")))
    mine = [m for m in published if m.get("client_job_id") == job["id"]]
    assert mine and mine[0]["user"].startswith("u:") and user not in str(published)


@pytest.mark.parametrize("bad", ["", " " * 3, "x" * 300])
async def test_a_bad_user_id_is_a_clear_400(client_for, gateway_url_b, bad):
    a = client_for(A, gateway_url_b)
    with pytest.raises(GenloomError) as err:
        await a.submit(text_job("hi", user=bad))
    assert err.value.status == 400 and err.value.param == "user"
