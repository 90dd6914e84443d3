"""`TextWindow` (pure): token text held back until the text that contains it passed moderation.

Two modes. Windowed: tokens are held until the window closes (a sentence end, N tokens or N
characters) and the window is checked whole. Checked (`hold` given): each token is checked as it
arrives, in context (the released tail before its sentence, the sentence so far, the token), and
released when that passes; it is held only while the text's end could still grow into a blocked term
(`hold.holds`), for at most `hold_tokens`. Every check covers the sentence so far, so the check of a
sentence's last token is the check of the whole sentence."""

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
    #: checked mode: what decides whether the text's end may still become a blocked term (None: windowed mode)
    hold: object | None = None
    hold_tokens: int = 4
    #: checked mode: the released text of the sentence being written (checked again with each token)
    sentence: str = ""

    def add(self, text: str, tokens: int, event, position=None) -> bool:
        """Hold an event; True when the window is full and should be checked."""
        self.pending_text += text
        self.pending_tokens += tokens
        self.pending_events.append(event)
        if position is not None:
            self.pending_positions.append(position)
        if self.hold is not None:
            return (len(self.pending_text) >= self.max_chars or self.pending_tokens >= self.hold_tokens
                    or _ends_sentence(self.pending_text) or not self.hold.holds(self.sentence + self.pending_text))
        tokens = self.max_tokens if self.released else self.first_tokens
        return (len(self.pending_text) >= self.max_chars or self.pending_tokens >= tokens
                or _ends_sentence(self.pending_text))

    def check_text(self) -> str:
        return self.context + self.sentence + self.pending_text

    def release(self) -> tuple[list, list]:
        """The held events and their positions; the window starts again, keeping their tail as context."""
        events, positions = self.pending_events, self.pending_positions
        self.released = True
        if self.hold is not None:  # the sentence grows until it ends (or reaches max_chars), then is context
            self.sentence += self.pending_text
            if _ends_sentence(self.sentence) or len(self.sentence) >= self.max_chars:
                self.context = (self.context + self.sentence)[-CONTEXT_CHARS:]
                self.sentence = ""
        else:
            self.context = (self.context + self.pending_text)[-CONTEXT_CHARS:]
        self.pending_text = ""
        self.pending_tokens = 0
        self.pending_events = []
        self.pending_positions = []
        return events, positions


def _ends_sentence(text: str) -> bool:
    return text.rstrip(" \"')]").endswith(SENTENCE_ENDS)
