"""`POST /v1/embeddings` with the official OpenAI SDK against a real HTTP server and the real
all-MiniLM-L6-v2 (the one the embedding stage uses): float and base64 encodings, batching of
concurrent requests, and clear errors. No broker or Redis is involved: the gateway embeds itself."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import openai
import pytest

from gateway.app import create_app
from gateway.auth import ApiKeys
from gateway.inprocess import InProcessServer
from infra.models.embedder import load_embedder
from infra.settings.gateway import GatewaySettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEY = "gl-emb-key"
MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
async def served():
    app = create_app(GatewaySettings(), redis=None, producer=None, api_keys=ApiKeys([(KEY, "t-emb")]))
    server = await InProcessServer(app).start()
    yield server.url, app
    await server.stop()


def sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=60)


async def test_sdk_embeddings_are_the_stage_s_vectors_in_both_encodings(served):
    url, _ = served
    texts = ["The cat sat on the mat.", "A kitten rested on the rug.", "Quarterly revenue grew by 4%."]
    as_float = await sdk(url).embeddings.create(model=MODEL, input=texts, encoding_format="float")
    as_b64 = await sdk(url).embeddings.create(model=MODEL, input=texts)  # the SDK asks for base64 by default
    expected = load_embedder(dtype="float32").encode(texts)
    for answer in (as_float, as_b64):
        got = np.array([d.embedding for d in sorted(answer.data, key=lambda d: d.index)], dtype=np.float32)
        assert got.shape == (3, 384)
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
        assert np.allclose(got, expected, atol=2e-2)  # the gateway may run bfloat16 weights ("auto")
        assert answer.usage.prompt_tokens == answer.usage.total_tokens > 3 * 3
    related, unrelated = float(got[0] @ got[1]), float(got[0] @ got[2])
    assert related > unrelated + 0.3


async def test_concurrent_requests_share_forward_passes(served, monkeypatch):
    url, app = served
    service = app.state.embeddings
    embedder = await service._load()
    calls: list[int] = []
    real = embedder.encode

    def counting(texts, batch_size=64):
        calls.append(len(texts))
        return real(texts, batch_size)

    monkeypatch.setattr(embedder, "encode", counting)
    service.per_tenant = 64
    inputs = [f"sentence number {i} about the sea" for i in range(24)]
    answers = await asyncio.gather(*(sdk(url).embeddings.create(model=MODEL, input=t, encoding_format="float")
                                     for t in inputs))
    assert sum(calls) == 24 and len(calls) < 24  # coalesced, and every text embedded once
    alone = real(inputs)
    for text_vector, answer in zip(alone, answers):
        assert np.allclose(answer.data[0].embedding, text_vector, atol=1e-4)  # each got its own row


@pytest.mark.parametrize("kwargs,status,code,param", [
    ({"model": "text-embedding-3-small", "input": "x"}, 404, "model_not_found", "model"),
    ({"model": MODEL, "input": []}, 400, "empty_input", "input"),
    ({"model": MODEL, "input": ["ok", "  "]}, 400, "empty_input", "input"),
    ({"model": MODEL, "input": [101, 2023]}, 400, "invalid_parameter", "input"),
    ({"model": MODEL, "input": "x", "dimensions": 256}, 400, "invalid_parameter", "dimensions"),
    ({"model": MODEL, "input": "word " * 400}, 400, "context_length_exceeded", "input"),
    ({"model": MODEL, "input": ["x"] * 2049}, 400, "invalid_parameter", "input"),
])
async def test_bad_embedding_requests_name_the_parameter(served, kwargs, status, code, param):
    url, _ = served
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(url).embeddings.create(encoding_format="float", **kwargs)
    assert info.value.status_code == status
    assert (info.value.body["code"], info.value.body["param"]) == (code, param)


async def test_the_embedding_model_is_listed(served):
    url, _ = served
    ids = [m.id async for m in sdk(url).models.list()]
    assert "sentence-transformers/all-MiniLM-L6-v2" in ids


async def test_a_tenant_past_its_bound_is_429_and_others_are_served(served, monkeypatch):
    url, app = served
    service = app.state.embeddings
    monkeypatch.setattr(service, "per_tenant", 1)
    embedder = await service._load()
    gate = threading.Event()
    real = embedder.encode

    def slow(texts, batch_size=64):
        gate.wait(30)  # the first request holds its slot until the test lets it go
        return real(texts, batch_size)

    monkeypatch.setattr(embedder, "encode", slow)
    first = asyncio.create_task(sdk(url).embeddings.create(model=MODEL, input="held", encoding_format="float"))
    while not service._in_flight:
        await asyncio.sleep(0.01)
    with pytest.raises(openai.RateLimitError) as info:
        await sdk(url).embeddings.create(model=MODEL, input="second", encoding_format="float")
    assert info.value.body["code"] == "rate_limited"
    gate.set()
    assert len((await first).data) == 1
    assert not service._in_flight  # the slot is given back
