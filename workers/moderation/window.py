"""`TextWindow` (pure): token text held back until the window that contains it passed moderation."""

from __future__ import annotations

from dataclasses import dataclass, field

#: text that ends a sentence: a window closes there, so a check sees whole sentences when it can
SENTENCE_ENDS = (".", "!", "?", "\n", "…", "。")
#: characters of released text kept as context for the next check, so a phrase split across two
#: windows is still seen whole
CONTEXT_CHARS = 96


@dataclass
class TextWindow:
    """One job's held-back output. It closes at a sentence end, after `max_tokens` tokens or after
    `max_chars` characters, whichever comes first, so the hold-back is bounded. The job's first
    window closes after `first_tokens` tokens: time to first token then grows by one check, not by a
    window of generation (a word or two says little; every later window is checked with it as context)."""

    max_chars: int
    max_tokens: int = 16
    first_tokens: int = 1
    released: bool = False
    pending_text: str = ""
    pending_tokens: int = 0
    pending_events: list = field(default_factory=list)
    #: where each held event was read (its offset may be committed only once it is released or dropped)
    pending_positions: list = field(default_factory=list)
    context: str = ""

    def add(self, text: str, tokens: int, event, position=None) -> bool:
        """Hold an event; True when the window is full and should be checked."""
        self.pending_text += text
        self.pending_tokens += tokens
        self.pending_events.append(event)
        if position is not None:
            self.pending_positions.append(position)
        tokens = self.max_tokens if self.released else self.first_tokens
        return (len(self.pending_text) >= self.max_chars or self.pending_tokens >= tokens
                or self.pending_text.rstrip(" \"')]").endswith(SENTENCE_ENDS))

    def check_text(self) -> str:
        return self.context + self.pending_text

    def release(self) -> tuple[list, list]:
        """The held events and their positions; the window starts again, keeping their tail as context."""
        events, positions = self.pending_events, self.pending_positions
        self.released = True
        self.context = (self.context + self.pending_text)[-CONTEXT_CHARS:]
        self.pending_text = ""
        self.pending_tokens = 0
        self.pending_events = []
        self.pending_positions = []
        return events, positions
