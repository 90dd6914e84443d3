"""Stop strings on streamed text: cut at the first match, hold back possible partial matches."""

from __future__ import annotations

from collections.abc import Sequence


class StopStringMatcher:
    """Filters one sequence's text deltas against its stop strings.

    Text that could be the beginning of a stop string is held back until the next delta decides
    it. When a stop string appears, the text before it is released and the rest (the stop string
    included) is dropped. Because held text always covers any partial match, a match can only
    start inside the held text or the new delta, so only that tail is searched.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._held = ""

    def feed(self, delta: str) -> tuple[str, bool]:
        """Returns (text safe to emit now, whether a stop string was found)."""
        if not self._stops:
            return delta, False
        text = self._held + delta
        cut = -1
        for stop in self._stops:
            at = text.find(stop)
            if at != -1 and (cut == -1 or at < cut):
                cut = at
        if cut != -1:
            self._held = ""
            return text[:cut], True
        keep = self._partial_match_len(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        """Release held text when generation ends for another reason."""
        text, self._held = self._held, ""
        return text

    def _partial_match_len(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:size]):
                    best = size
                    break
        return best
