"""The privacy stage: thin. It runs the batch's analysis in a thread (presidio and spaCy are CPU
work that would stall the faust loop), swaps in the redacted requests and keeps each job's mapping
in the vault for the gateway to restore from."""

from __future__ import annotations

import asyncio
import functools
import logging

from pydantic import ValidationError
from redis.exceptions import RedisError

from infra.redis.redactions import RedactionVault
from infra.settings.streams import PrivacySettings
from schemas.enums import ErrorCode
from schemas.requests import parse_request

from ..stages import Failure, Item
from .engine import AnalyzerBusy, PiiAnalyzer
from .logic import Redacted, overflow_message, prompt_texts, redact_batch

log = logging.getLogger(__name__)


class PrivacyStage:
    name = "privacy"

    def __init__(self, analyzer: PiiAnalyzer, vault: RedactionVault | None, settings: PrivacySettings) -> None:
        self._analyzer = analyzer
        self._vault = vault
        self._settings = settings

    async def run(self, items: list[Item]) -> None:
        todo = [i for i in items if i.pending and self._settings.redacts(i.request.tenant)]
        if not todo:
            return
        results = await self._redact(todo)
        mappings: dict[str, dict[str, str]] = {}
        for item, result in zip(todo, results):
            if result is None:
                continue
            item.redactions = dict(result.redaction.counts)
            if not result.changed:
                continue
            try:  # a placeholder is longer than a short value: the prompt may now be over its limit
                item.request = parse_request(result.request.model_dump(mode="json"))
            except ValidationError as exc:
                item.end = Failure(ErrorCode.REDACTION_FAILED,
                                   overflow_message(exc.errors(include_input=False), item.request.modality.value))
                continue
            if result.redaction.mapping:
                mappings[item.request.job_id] = result.redaction.mapping
        if mappings and self._vault is not None and self._restores(items, mappings):
            try:
                await self._vault.put_many(mappings)
            except (RedisError, OSError) as exc:
                log.warning("could not store %d placeholder mappings (%s): their values will not be restored",
                            len(mappings), type(exc).__name__)
                for item in todo:
                    if item.pending and item.request.job_id in mappings:
                        item.degraded.append("restore")

    def _restores(self, items: list[Item], mappings: dict[str, dict[str, str]]) -> bool:
        for item in items:
            if item.request.job_id in mappings and not self._settings.restores(item.request.tenant):
                del mappings[item.request.job_id]  # nobody will ever read it back
        return bool(mappings)

    async def _redact(self, todo: list[Item]) -> list[Redacted | None]:
        """The whole batch in one analysis; when that raises, each job alone, failing only the ones that raise.

        A batch of short texts with no name cue, digits or @ (a short chat turn) is analysed here on
        the loop: that takes microseconds, less than the thread hand-off, which on a busy machine
        waits for the scheduler twice. It goes to a thread all the same while another thread (the memory
        writer's, whose batch of answers may take hundreds of milliseconds) holds the analyzer: the loop
        never waits for it."""
        try:
            requests = [i.request for i in todo]
            if self._analyzer.cheap([t for r in requests for t in prompt_texts(r)]):
                try:
                    return redact_batch(requests, functools.partial(self._analyzer.analyze, wait=False))
                except AnalyzerBusy:
                    pass
            return await asyncio.to_thread(redact_batch, requests, self._analyzer.analyze)
        except Exception as exc:  # no traceback in the log: its frames would hold the prompts
            log.error("redacting a batch of %d failed (%s); redacting its jobs one by one", len(todo),
                      type(exc).__name__)
        results: list[Redacted | None] = []
        for item in todo:
            try:
                results += await asyncio.to_thread(redact_batch, [item.request], self._analyzer.analyze)
            except Exception as exc:
                log.error("job %s: redaction failed (%s)", item.request.job_id, type(exc).__name__)
                item.end = Failure(ErrorCode.REDACTION_FAILED,
                                   f"the privacy stage could not analyse the prompt ({type(exc).__name__}); the job"
                                   " was not run so that no unredacted text went on: report it if it repeats")
                results.append(None)
        return results
