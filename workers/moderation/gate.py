"""`ModerationGate` (pure): decides, event by event, what passes from raw output to clients.

Text is released in windows (window.py): token deltas are held until the window closes (a
sentence end, N tokens or N characters), the window (with the tail of the previous one as context)
is checked, and only then released. A blocked job gets a `moderation` verdict and a terminal
`completed` with finish_reason `content_filter`; everything the worker sends after that is dropped,
and the worker is asked to stop. What was released stays released; what was held never is.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from infra.kafka.numbering import EventNumbering
from infra.moderation.moderator import Moderator
from infra.moderation.policy import Decision
from schemas.enums import EventSource, FinishReason
from schemas.events import Completed, JobEvent, ModerationVerdict, TokenDelta, Usage, is_terminal

from .window import TextWindow

log = logging.getLogger(__name__)

#: blocked jobs remembered so that late events of theirs are still dropped
BLOCKED_MEMORY = 100_000


@dataclass
class GateOutput:
    """What to publish for one input event, in order, and which jobs to cancel."""

    publish: list[JobEvent] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)


class ModerationGate:
    def __init__(self, moderator: Moderator | None, *, window_chars: int = 160, window_tokens: int = 16) -> None:
        self._moderator = moderator
        self._window_chars = window_chars
        self._window_tokens = window_tokens
        self._windows: dict[str, TextWindow] = {}
        self._blocked: OrderedDict[str, None] = OrderedDict()
        self._numbering = EventNumbering(EventSource.MODERATION)

    @property
    def moderator(self) -> Moderator | None:
        return self._moderator

    def held(self) -> int:
        """Token events held back in open windows, all jobs."""
        return sum(len(w.pending_events) for w in self._windows.values())

    def on_event(self, event: JobEvent) -> GateOutput:
        out = GateOutput()
        job = event.job_id
        if job in self._blocked:
            return out
        if self._moderator is None:
            out.publish.append(event)
            return out
        if isinstance(event, TokenDelta):
            window = self._windows.setdefault(job, TextWindow(self._window_chars, self._window_tokens))
            if window.add(event.text, event.tokens, event):
                self._check(event, window, out)
            return out
        if is_terminal(event):
            window = self._windows.pop(job, None)
            if window is not None and window.pending_events:
                self._check(event, window, out)
                if job in self._blocked:
                    return out
            if isinstance(event, Completed) and event.text and window is None:
                # no token came through this gate (a cached answer, a short reply): check it whole
                decision = self._decide(event.text)
                if not decision.allowed:
                    self._block(event, decision, out)
                    return out
            out.publish.append(event)
            return out
        out.publish.append(event)
        return out

    def _decide(self, text: str) -> Decision:
        try:
            return self._moderator.check([(None, text)])[0]
        except Exception as exc:  # the classifier failed: the policy decides, and the verdict says so
            log.error("moderating a window failed (%s)", type(exc).__name__)
            return self._moderator.policies.default.on_failure(type(exc).__name__)

    def _check(self, event: JobEvent, window: TextWindow, out: GateOutput) -> None:
        decision = self._decide(window.check_text())
        if decision.allowed:
            if decision.reason:  # released because the policy fails open: say so once per window
                out.publish.append(self._verdict(event, decision))
            out.publish.extend(window.release())
        else:
            self._windows.pop(event.job_id, None)
            self._block(event, decision, out)

    def _verdict(self, event: JobEvent, decision: Decision) -> ModerationVerdict:
        return self._numbering.build(
            ModerationVerdict, event.job_id, event.attempt, target="output", allowed=decision.allowed,
            categories=decision.categories, score=decision.score, scores=decision.scores,
            model=self._moderator.name, reason=decision.reason,
        )

    def _block(self, event: JobEvent, decision: Decision, out: GateOutput) -> None:
        job, attempt = event.job_id, event.attempt
        out.publish.append(self._verdict(event, decision))
        out.publish.append(
            self._numbering.build(
                Completed, job, attempt, finish_reason=FinishReason.CONTENT_FILTER, usage=Usage(),
            )
        )
        out.cancel.append(job)
        self._blocked[job] = None
        while len(self._blocked) > BLOCKED_MEMORY:
            self._blocked.popitem(last=False)
