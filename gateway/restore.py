"""Putting a requester's own values back where the privacy stage left placeholders.

The mapping of a job is read from the vault once, the first time one of its entries carries text
(by then the job has passed the privacy stage). Token deltas go through a `StreamRestorer`, which
holds back a placeholder split across deltas until it completes; `completed.text` and the job
view's result text are restored whole. Tenants with restoration off (GENLOOM_PRIVACY_RESTORE_OFF_TENANTS)
see the placeholders. Speech is spoken with neutral words (schemas.redaction.SPOKEN): nothing to restore.
"""

from __future__ import annotations

import json
import logging

from redis.exceptions import RedisError

from infra.redis.jobstore import Entry
from infra.redis.redactions import RedactionVault
from infra.settings.streams import PrivacySettings
from schemas.api import JobView
from schemas.enums import EventType
from schemas.redaction import StreamRestorer, restore
from schemas.requests import scoped_job_id

log = logging.getLogger(__name__)

#: entries whose text may hold placeholders
_TEXT_TYPES = frozenset({EventType.TOKEN, EventType.COMPLETED})


class Restoration:
    """The gateway's side of redaction: reads mappings, restores entries and views."""

    def __init__(self, vault: RedactionVault | None, settings: PrivacySettings) -> None:
        self._vault = vault
        self._settings = settings

    async def mapping(self, job_id: str, tenant: str) -> dict[str, str]:
        if self._vault is None or not self._settings.restores(tenant):
            return {}
        try:
            return await self._vault.get(job_id)
        except (RedisError, OSError) as exc:  # the placeholders are shown; the stream goes on
            log.warning("job %s: placeholder mapping unavailable (%s)", job_id, type(exc).__name__)
            return {}

    async def view(self, view: JobView, tenant: str) -> JobView:
        if view.result is None or not view.result.text or "<" not in view.result.text:
            return view
        mapping = await self.mapping(scoped_job_id(tenant, view.id), tenant)  # the view shows the tenant's id
        if not mapping:
            return view
        result = view.result.model_copy(update={"text": restore(view.result.text, mapping)})
        return view.model_copy(update={"result": result})

    def follower(self, job_id: str, tenant: str) -> EntryRestorer:
        return EntryRestorer(self, job_id, tenant)


class EntryRestorer:
    """Restores one followed job's entries in order (`entries` may give back two: a held tail at the end)."""

    def __init__(self, restoration: Restoration, job_id: str, tenant: str) -> None:
        self._restoration = restoration
        self._job_id = job_id
        self._tenant = tenant
        self._stream: StreamRestorer | None = None
        self._mapping: dict[str, str] = {}
        self._loaded = False
        self._last_id = 0

    async def entries(self, entry: Entry) -> list[Entry]:
        if entry.type not in _TEXT_TYPES and not entry.terminal:
            return [entry]
        if not self._loaded:
            self._loaded = True
            self._mapping = await self._restoration.mapping(self._job_id, self._tenant)
            self._stream = StreamRestorer(self._mapping) if self._mapping else None
        if self._stream is None:
            return [entry]
        out: list[Entry] = []
        if entry.type == EventType.TOKEN:
            data = json.loads(entry.data)
            data["text"] = self._stream.feed(str(data.get("text", "")))
            self._last_id = entry.id
            return [_with(entry, data)]
        held = self._stream.flush()
        if held:  # a "<..." that never became a placeholder: sent as it was, before the end
            out.append(Entry(self._last_id, EventType.TOKEN, json.dumps(
                {"job_id": self._job_id, "type": "token", "text": held, "tokens": 0, "seq": 0, "source": "worker"},
                separators=(",", ":")).encode()))
        if entry.type == EventType.COMPLETED:
            data = json.loads(entry.data)
            if data.get("text"):
                data["text"] = restore(data["text"], self._mapping)
            entry = _with(entry, data)
        return [*out, entry]


def _with(entry: Entry, data: dict) -> Entry:
    return Entry(entry.id, entry.type, json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
