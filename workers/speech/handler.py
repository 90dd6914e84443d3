"""The speech worker's handler: piper synthesis streamed sentence by sentence, plus the whole file
as an artifact."""

from __future__ import annotations

import asyncio
import base64

from infra.blob.base import BlobStore, artifact_key
from infra.blob.config import BlobSettings, blob_store
from infra.models.settings import SpeechSettings
from schemas import SpeechRequest
from schemas.enums import Modality
from schemas.events import ModelInfo, Usage
from workers.context import JobContext

from .engine import SpeechEngine
from .synthesizer import PiperSynthesizer

class SpeechHandler:
    modality = Modality.SPEECH

    def __init__(self, synth: PiperSynthesizer, blobs: BlobStore, *, max_concurrency: int = 2,
                 voice_map: dict[str, str] | None = None) -> None:
        self._synth = synth
        self._engine = SpeechEngine(synth, voice_map=voice_map)
        self._blobs = blobs
        self.max_concurrency = max_concurrency

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(id=f"piper:{','.join(self._synth.voices())}", device="cpu", dtype="float32")

    async def start(self) -> None:
        await asyncio.to_thread(self._synth.start)
        await self._blobs.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self._synth.stop)
        await self._blobs.stop()

    def check(self, request: SpeechRequest) -> None:
        p = request.params
        self._engine.plan(p.input, p.voice, p.speed, p.format.value)

    async def run(self, ctx: JobContext) -> None:
        p = ctx.request.params
        plan = self._engine.plan(p.input, p.voice, p.speed, p.format.value)
        chunks = self._engine.run(plan)
        parts: list[bytes] = []
        seconds = 0.0
        while True:
            ctx.checkpoint()  # cancel takes effect between sentences
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                break
            parts.append(chunk.pcm)
            seconds += chunk.duration_s
            await ctx.audio(index=chunk.index, data=base64.b64encode(chunk.pcm).decode(),
                            sample_rate=chunk.sample_rate, duration_s=chunk.duration_s,
                            text=chunk.text)
        body = plan.format.encode(b"".join(parts), self._engine.sample_rate)
        ref = await self._blobs.put(
            artifact_key(ctx.request.tenant, ctx.job_id, f"speech.{plan.format.name}"),
            body, plan.format.mime_type,
        )
        await ctx.artifact(uri=ref.uri, mime_type=ref.mime, bytes=ref.bytes, sha256=ref.sha256,
                           duration_s=seconds)
        await ctx.completed(usage=Usage(audio_seconds=round(seconds, 3)))


def create_handler() -> SpeechHandler:
    settings = SpeechSettings()
    synth = PiperSynthesizer.with_shipped_voice(voice_dir=settings.voice_dir,
                                                intra_op_threads=settings.threads or None)
    return SpeechHandler(synth, blob_store(BlobSettings()), max_concurrency=settings.max_concurrency,
                         voice_map=settings.voice_map)
