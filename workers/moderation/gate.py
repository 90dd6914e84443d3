"""`ModerationGate` (pure): decides, event by event, what passes from raw output to clients.

Text is released per job and attempt (window.py), in one of two modes (`window_mode`, per tenant).
Checked (the deployment default): each token is checked as it arrives, with its sentence so far and
the tail of what came before, batched with every other stream's tokens of the same poll, and released
when that passes; it is held only while the text's end could still grow into a blocked term (a few
tokens at most). A sentence that fails ends the stream; what was released of it stays released.
Windowed: token deltas are held until the window closes (a sentence end, N tokens or N characters),
the window (with the tail of the previous one as context) is checked, and only then released. A blocked job gets a `moderation`
verdict and a terminal `completed` with finish_reason `content_filter`; everything the worker
sends after that is dropped, and the worker is asked to stop. What was released stays released;
what was held never is.

Each input event comes with its `position` (where the runner read it). `GateOutput.settled` lists
the positions whose events are finished: published, or dropped for good. A held event's position
is settled only when its window is released or dropped, so the runner never commits past a token
still held in memory: a gate killed mid-stream is replaced by one that reads the held tokens
again, and what it publishes twice the fan-out drops (same source, attempt and seq).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from infra.kafka.numbering import EventNumbering
from infra.metrics import moderation_decided
from infra.moderation.moderator import Moderator
from infra.moderation.policy import Decision
from infra.moderation.prefixes import HoldTerms, default_terms, everyday_words
from infra.redis.audit import content_hash
from schemas.enums import EventSource, FinishReason
from schemas.events import (
    Artifact,
    AudioChunk,
    Completed,
    JobEvent,
    ModerationVerdict,
    Started,
    TokenDelta,
    Usage,
    is_terminal,
)

from .window import TextWindow

log = logging.getLogger(__name__)

#: blocked jobs remembered so that late events of theirs are still dropped
BLOCKED_MEMORY = 100_000


@dataclass
class GateOutput:
    """What to publish for one input event, in order, which jobs to cancel, and which input
    positions are finished (their offsets may be committed once the output is acknowledged)."""

    publish: list[JobEvent] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    settled: list = field(default_factory=list)
    #: URIs of blocked artifacts, to delete from the blob store
    delete: list[str] = field(default_factory=list)


class ModerationGate:
    def __init__(self, moderator: Moderator | None, *, window_chars: int = 160, window_tokens: int = 16,
                 first_window_tokens: int | None = None, idle_s: float = 60.0, mode: str = "windowed",
                 hold_tokens: int = 4, clock: Callable[[], float] = time.monotonic) -> None:
        self._moderator = moderator
        #: the deployment's window mode; a tenant's policy may name its own
        self._mode = mode
        self._hold_tokens = hold_tokens
        #: a policy's block terms -> what holds a token for them (with the default terms)
        self._holds: dict[tuple[str, ...], HoldTerms] = {}
        self._idle_s = idle_s
        self._clock = clock
        #: (job, attempt) -> when its window last took a token
        self._touched: dict[tuple[str, int], float] = {}
        self._window_chars = window_chars
        self._window_tokens = window_tokens
        #: None: the first window is as long as the others
        self._first_tokens = first_window_tokens or window_tokens
        #: (job, attempt) -> its open window
        self._windows: dict[tuple[str, int], TextWindow] = {}
        self._blocked: OrderedDict[str, None] = OrderedDict()
        #: job -> its tenant, from its `started` event: output is checked under the tenant's policy
        self._tenants: OrderedDict[str, str] = OrderedDict()
        self._numbering = EventNumbering(EventSource.MODERATION)
        #: (tenant, text) -> decision, scored ahead for the batch being handled (`prefetch`)
        self._ahead: dict[tuple[str | None, str], Decision] = {}

    @property
    def moderator(self) -> Moderator | None:
        return self._moderator

    def prefetch(self, events: list[JobEvent]) -> None:
        """Score every text these events will have checked, in one classifier call, before
        `on_event` handles them one by one: the classifier's cost per call (most of it fixed) is
        paid once per polled batch, not once per window. A dry run on copies of the windows finds
        the texts; `on_event` then takes its decisions from here (and scores anything else itself)."""
        self._ahead.clear()
        if self._moderator is None:
            return
        shadow: dict[tuple[str, int], TextWindow] = {}
        tenants = dict(self._tenants)
        texts: list[tuple[str | None, str]] = []
        for event in events:  # hot loop: one pass, no classifier call
            job, slot = event.job_id, (event.job_id, event.attempt)
            if job in self._blocked:
                continue
            if isinstance(event, Started) and event.tenant:
                tenants[job] = event.tenant
            tenant = tenants.get(job)
            window = shadow.get(slot)
            if window is None and slot in self._windows:
                real = self._windows[slot]
                window = shadow[slot] = replace(real, pending_events=list(real.pending_events), pending_positions=[])
            if isinstance(event, TokenDelta):
                if window is None:
                    window = shadow[slot] = self._new_window(tenant)
                if window.add(event.text, event.tokens, event):
                    texts.append((tenant, window.check_text()))
                    window.release()
            elif isinstance(event, AudioChunk) and event.text:
                texts.append((tenant, event.text))
            elif is_terminal(event):
                if window is not None and window.pending_events:
                    texts.append((tenant, window.check_text()))
                elif window is None and isinstance(event, Completed) and event.text:
                    texts.append((tenant, event.text))
                shadow.pop(slot, None)
        if not texts:
            return
        try:
            decisions = self._moderator.check(texts)
        except Exception as exc:  # each window is then scored alone, and a failure decided there
            log.warning("scoring %d windows at once failed (%s); scoring them one by one", len(texts),
                        type(exc).__name__)
            return
        self._ahead = dict(zip(texts, decisions))

    def reviews(self, event: JobEvent) -> bool:
        """Whether `event` is an artifact the runner must check (read from the blob store and
        classify) and hand to `on_artifact` instead of `on_event`."""
        return (isinstance(event, Artifact) and self._moderator is not None and self._moderator.images is not None
                and event.job_id not in self._blocked)

    def on_artifact(self, event: Artifact, decision: Decision, position=None) -> GateOutput:
        """Release a checked artifact, or block its job and have its file deleted (it is never
        published, so no client learns its URL)."""
        out = GateOutput(settled=[position] if position is not None else [])
        if event.job_id in self._blocked:
            out.delete.append(event.uri)
            return out
        if decision.allowed:
            if decision.reason:  # released unchecked: the policy fails open
                out.publish.append(self._verdict(event, decision, "artifact"))
            else:
                moderation_decided("artifact", "allowed")
            out.publish.append(event)
            return out
        out.delete.append(event.uri)
        held = self._windows.pop((event.job_id, event.attempt), None)
        self._touched.pop((event.job_id, event.attempt), None)
        if held is not None:  # its held text is never released: dropped for good, so its offsets may be committed
            out.settled.extend(held.pending_positions)
        self._block(event, decision, out, "artifact")
        return out

    def expire(self) -> GateOutput:
        """Check and release (or block) the windows of jobs that sent nothing for `idle_s`: a worker
        that died without a takeover, whose job the reconciler ends, must not hold text (and the
        partition's commits) forever."""
        out = GateOutput()
        cutoff = self._clock() - self._idle_s
        for slot in [s for s, at in self._touched.items() if at < cutoff]:
            del self._touched[slot]
            window = self._windows.get(slot)
            if window is not None and window.pending_events:
                self._check(window.pending_events[-1], window, out)
            self._windows.pop(slot, None)
        return out

    def held(self) -> int:
        """Token events held back in open windows, all jobs."""
        return sum(len(w.pending_events) for w in self._windows.values())

    def on_event(self, event: JobEvent, position=None) -> GateOutput:
        out = GateOutput()
        if position is not None:
            out.settled.append(position)  # taken back below while the event is held
        job, slot = event.job_id, (event.job_id, event.attempt)
        if job in self._blocked:
            return out
        if self._moderator is None:
            out.publish.append(event)
            return out
        if isinstance(event, TokenDelta):
            window = self._windows.get(slot)
            if window is None:
                window = self._windows[slot] = self._new_window(self._tenants.get(job))
            self._touched[slot] = self._clock()
            out.settled.clear()
            if window.add(event.text, event.tokens, event, position):
                self._check(event, window, out)
            return out
        if isinstance(event, Started) and event.tenant:
            self._tenants[job] = event.tenant
            while len(self._tenants) > BLOCKED_MEMORY:
                self._tenants.popitem(last=False)
        if isinstance(event, AudioChunk) and event.text:
            # speech is checked by the text it speaks, sentence by sentence as it streams
            decision = self._decide(job, event.text)
            if not decision.allowed:
                self._block(event, decision, out, content=event.text)
                return out
        if isinstance(event, Started):
            self._supersede(event, out)
        if is_terminal(event):
            window = self._windows.pop(slot, None)
            self._touched.pop(slot, None)
            if window is not None and window.pending_events:
                self._check(event, window, out)
                if job in self._blocked:
                    self._tenants.pop(job, None)
                    return out
            if isinstance(event, Completed) and event.text and window is None:
                # no token came through this gate (a cached answer, a short reply): check it whole
                decision = self._decide(job, event.text)
                if not decision.allowed:
                    self._block(event, decision, out, content=event.text)
                    self._tenants.pop(job, None)
                    return out
            self._tenants.pop(job, None)
        out.publish.append(event)
        return out

    def _new_window(self, tenant: str | None) -> TextWindow:
        """A job's window in its tenant's mode (the policy's, else the deployment's)."""
        policy = self._moderator.policies.of(tenant)
        if (policy.stream or self._mode) != "checked":
            return TextWindow(self._window_chars, self._window_tokens, self._first_tokens)
        hold = self._holds.get(policy.block_terms)
        if hold is None:
            hold = self._holds[policy.block_terms] = HoldTerms(default_terms() | set(policy.block_terms),
                                                                   everyday_words())
        return TextWindow(self._window_chars, self._window_tokens, self._first_tokens, hold=hold,
                          hold_tokens=self._hold_tokens)

    def _supersede(self, event: Started, out: GateOutput) -> None:
        """A takeover started the job again: earlier attempts' held text is stale (the fan-out drops
        their events), so their windows close unreleased."""
        for slot in [s for s in self._windows if s[0] == event.job_id and s[1] != event.attempt]:
            out.settled.extend(self._windows.pop(slot).pending_positions)
            self._touched.pop(slot, None)

    def _decide(self, job: str, text: str) -> Decision:
        """The job's text under its tenant's policy (the default one when its `started` was not seen here)."""
        tenant = self._tenants.get(job)
        ahead = self._ahead.get((tenant, text))  # the same text under the same policy: the same decision
        if ahead is not None:
            if ahead.allowed and not ahead.reason:
                moderation_decided("output", "allowed")
            return ahead
        try:
            decision = self._moderator.check([(tenant, text)])[0]
        except Exception as exc:  # the classifier failed: the policy decides, and the verdict says so
            log.error("moderating a window failed (%s)", type(exc).__name__)
            return self._moderator.policies.of(tenant).on_failure(type(exc).__name__)
        if decision.allowed:  # blocks are counted by the fan-out, from the verdict this gate publishes
            moderation_decided("output", "allowed")
        return decision

    def _check(self, event: JobEvent, window: TextWindow, out: GateOutput) -> None:
        text = window.check_text()
        decision = self._decide(event.job_id, text)
        events, positions = window.release()
        out.settled.extend(positions)
        if decision.allowed:
            if decision.reason:  # released because the policy fails open: say so once per window
                out.publish.append(self._verdict(event, decision))
            out.publish.extend(events)
        else:
            self._windows.pop((event.job_id, event.attempt), None)
            self._block(event, decision, out, content=text)

    def _verdict(self, event: JobEvent, decision: Decision, target: str = "output",
                 content: str | None = None) -> ModerationVerdict:
        if isinstance(event, Artifact):
            digest = event.sha256
        else:
            digest = content_hash(content) if content is not None and not decision.allowed else None
        return self._numbering.build(
            ModerationVerdict, event.job_id, event.attempt, target=target, allowed=decision.allowed,
            categories=decision.categories, score=decision.score, scores=decision.scores,
            model=self._moderator.name, reason=decision.reason, content_sha256=digest,
        )

    def _block(self, event: JobEvent, decision: Decision, out: GateOutput, target: str = "output",
               content: str | None = None) -> None:
        job, attempt = event.job_id, event.attempt
        out.publish.append(self._verdict(event, decision, target, content))
        out.publish.append(
            self._numbering.build(
                Completed, job, attempt, finish_reason=FinishReason.CONTENT_FILTER, usage=Usage(),
            )
        )
        out.cancel.append(job)
        self._blocked[job] = None
        while len(self._blocked) > BLOCKED_MEMORY:
            self._blocked.popitem(last=False)
