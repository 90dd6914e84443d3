"""Moderation decisions (pure): which text may be released.

A `TextClassifier` scores a window of text; the gate releases token deltas only after the window
that contains them passed. The built-in classifier is a word-boundary blocklist (configurable);
model-based classifiers plug in behind the same interface.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    score: float
    categories: list[str] = field(default_factory=list)


class TextClassifier(Protocol):
    name: str

    def classify(self, text: str) -> Verdict: ...


class BlocklistClassifier:
    """Blocks text containing any listed term as a whole word (case-insensitive)."""

    name = "blocklist"

    def __init__(self, terms: list[str], category: str = "blocked_term") -> None:
        cleaned = sorted({t.strip().lower() for t in terms if t.strip()}, key=len, reverse=True)
        self._pattern = (
            re.compile(r"\b(" + "|".join(re.escape(t) for t in cleaned) + r")\b", re.IGNORECASE)
            if cleaned
            else None
        )
        self._category = category

    def classify(self, text: str) -> Verdict:
        if self._pattern is not None and self._pattern.search(text):
            return Verdict(False, 1.0, [self._category])
        return Verdict(True, 0.0)


class ProfanityClassifier:
    """The linear SVM of `alt-profanity-check` (ships in its wheel): blocks windows whose
    profanity probability reaches `threshold`."""

    name = "alt-profanity-check"

    def __init__(self, threshold: float = 0.8) -> None:
        from profanity_check import predict_prob  # the `moderation` extra

        self._predict = predict_prob
        self._threshold = threshold

    def classify(self, text: str) -> Verdict:
        score = float(self._predict([text])[0])
        if score >= self._threshold:
            return Verdict(False, score, ["profanity"])
        return Verdict(True, score)


@dataclass
class TextWindow:
    """Token text held back until the window is checked; the tail is kept as context so a term
    split across two windows is still seen."""

    size: int
    pending_text: str = ""
    pending_events: list = field(default_factory=list)
    context: str = ""

    def add(self, text: str, event) -> bool:
        """Hold an event; True when the window is full and should be checked."""
        self.pending_text += text
        self.pending_events.append(event)
        return len(self.pending_text) >= self.size

    def check_text(self) -> str:
        return self.context + self.pending_text

    def release(self) -> list:
        events = self.pending_events
        self.context = (self.context + self.pending_text)[-64:]
        self.pending_text = ""
        self.pending_events = []
        return events
