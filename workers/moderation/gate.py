"""`ModerationGate` (pure): decides, event by event, what passes from raw output to clients.

Text is released in windows: token deltas are held until `window_chars` of text have built up,
the window (with the tail of the previous one as context) is classified, and only then released.
A blocked job gets a `moderation` verdict and a terminal `completed` with finish_reason
`content_filter`; everything the worker sends after that is dropped, and the worker is asked
to stop.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from infra.kafka.numbering import EventNumbering
from schemas.enums import EventSource, FinishReason
from schemas.events import Completed, JobEvent, ModerationVerdict, TokenDelta, Usage, is_terminal

from .policy import TextClassifier, TextWindow

#: blocked jobs remembered so that late events of theirs are still dropped
BLOCKED_MEMORY = 100_000


@dataclass
class GateOutput:
    """What to publish for one input event, in order, and which jobs to cancel."""

    publish: list[JobEvent] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)


class ModerationGate:
    def __init__(self, classifier: TextClassifier | None, *, window_chars: int = 48) -> None:
        self._classifier = classifier
        self._window_chars = window_chars
        self._windows: dict[str, TextWindow] = {}
        self._blocked: OrderedDict[str, None] = OrderedDict()
        self._numbering = EventNumbering(EventSource.MODERATION)

    @property
    def classifier(self) -> TextClassifier | None:
        return self._classifier

    def on_event(self, event: JobEvent) -> GateOutput:
        out = GateOutput()
        job = event.job_id
        if job in self._blocked:
            return out
        if self._classifier is None:
            out.publish.append(event)
            return out
        if isinstance(event, TokenDelta):
            window = self._windows.setdefault(job, TextWindow(self._window_chars))
            if window.add(event.text, event):
                self._check(event, window, out)
            return out
        if is_terminal(event):
            window = self._windows.pop(job, None)
            if window is not None and window.pending_events:
                self._check(event, window, out)
                if job in self._blocked:
                    return out
            if isinstance(event, Completed) and event.text:
                verdict = self._classifier.classify(event.text)
                if not verdict.allowed:
                    self._block(event, verdict, out)
                    return out
            out.publish.append(event)
            return out
        out.publish.append(event)
        return out

    def _check(self, event: JobEvent, window: TextWindow, out: GateOutput) -> None:
        verdict = self._classifier.classify(window.check_text())
        if verdict.allowed:
            out.publish.extend(window.release())
        else:
            self._windows.pop(event.job_id, None)
            self._block(event, verdict, out)

    def _block(self, event: JobEvent, verdict, out: GateOutput) -> None:
        job, attempt = event.job_id, event.attempt
        out.publish.append(
            self._numbering.build(
                ModerationVerdict, job, attempt, target="output", allowed=False,
                categories=verdict.categories, score=verdict.score, model=self._classifier.name,
            )
        )
        out.publish.append(
            self._numbering.build(
                Completed, job, attempt, finish_reason=FinishReason.CONTENT_FILTER, usage=Usage(),
            )
        )
        out.cancel.append(job)
        self._blocked[job] = None
        while len(self._blocked) > BLOCKED_MEMORY:
            self._blocked.popitem(last=False)
