"""`RemoteEngine`'s per-tenant cache salt, against a local HTTP server that answers as vLLM does
(vLLM does not run on these machines): its model card says `owned_by: vllm`, and its chat
endpoint takes `cache_salt`. The real `transformers serve`, which refuses unknown fields, is driven
in tests/integration/test_text_remote_engine.py with the default `auto` mode."""

from __future__ import annotations

import asyncio
import json

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from workers.text.engine_remote import RemoteEngine, salt_of
from workers.text.sampling import SamplingParams


class EngineServer:
    """A streamed OpenAI-compatible chat endpoint whose model card names `owned_by`; keeps every body."""

    def __init__(self, owned_by: str) -> None:
        self.owned_by = owned_by
        self.bodies: list[dict] = []
        app = Starlette(routes=[Route("/v1/models", self._models),
                                Route("/v1/chat/completions", self._chat, methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self._task: asyncio.Task | None = None

    async def _models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "m", "object": "model", "owned_by": self.owned_by,
                                                          "max_model_len": 2048}]})

    async def _chat(self, request: Request) -> StreamingResponse:
        self.bodies.append(await request.json())

        async def chunks():
            for piece in ("Hello", " sea"):
                yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': piece}}]})}\n\n"
            yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def __aenter__(self) -> str:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc) -> None:
        self._server.should_exit = True
        await self._task


async def generate(url: str, mode: str, tenants: list[str]) -> tuple[RemoteEngine, list[str]]:
    """One chat per tenant through a RemoteEngine in `mode`; returns the engine and the texts."""
    done: dict[str, asyncio.Future] = {}
    texts: dict[str, str] = {}

    def on_outputs(outputs, running):
        for out in outputs:
            texts[out.request_id] = texts.get(out.request_id, "") + out.text_delta
            if out.finished:
                done[out.request_id].set_result(out)

    engine = RemoteEngine(url, "m", on_outputs=on_outputs, cache_salt=mode, start_timeout_s=10)
    await engine.start()
    try:
        for i, tenant in enumerate(tenants):
            done[f"r{i}"] = asyncio.get_running_loop().create_future()
            engine.add(f"r{i}", [], SamplingParams(max_tokens=4, cache_salt=tenant),
                       messages=[{"role": "user", "content": "hi"}])
        finished = await asyncio.wait_for(asyncio.gather(*done.values()), 20)
    finally:
        await engine.stop()
    assert all(out.error is None for out in finished)
    return engine, [texts[f"r{i}"] for i in range(len(tenants))]


async def test_requests_to_vllm_are_salted_by_tenant_without_naming_it():
    server = EngineServer("vllm")
    async with server as url:
        engine, texts = await generate(url, "auto", ["acme", "acme", "globex"])
    assert engine.salted and texts == ["Hello sea"] * 3
    salts = [body["cache_salt"] for body in server.bodies]
    assert salts[0] == salts[1] == salt_of("acme") != salts[2] == salt_of("globex")
    assert all("acme" not in salt and "globex" not in salt for salt in salts)


@pytest.mark.parametrize("owned_by, mode, salted", [
    ("huggingface", "auto", False),  # transformers serve and others: refuse or ignore the field
    ("vllm", "off", False),
    ("llamacpp", "tenant", True),
])
async def test_the_salt_follows_the_mode_and_the_server(owned_by, mode, salted):
    server = EngineServer(owned_by)
    async with server as url:
        engine, texts = await generate(url, mode, ["acme"])
    assert engine.salted is salted and texts == ["Hello sea"]
    assert ("cache_salt" in server.bodies[0]) is salted


async def test_a_job_without_a_tenant_is_not_salted():
    server = EngineServer("vllm")
    async with server as url:
        await generate(url, "auto", [""])
    assert "cache_salt" not in server.bodies[0]


def test_an_unknown_mode_is_refused_with_the_modes_named():
    with pytest.raises(ValueError, match="auto, tenant, off"):
        RemoteEngine("http://127.0.0.1:1", "m", on_outputs=lambda o, r: None, cache_salt="always")
