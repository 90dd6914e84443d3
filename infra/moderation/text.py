"""Text classifiers: category scores for a batch of texts.

`CategoryClassifier` is the default: the category lexicons (lexicon.py) over the normalised text,
combined with the profanity model of `alt-profanity-check` (a linear SVM that ships in its wheel,
so it runs offline). The model scores insulting language; aimed at someone it counts as
harassment, otherwise it only adds weak evidence. `BlocklistClassifier` is the plain word list of
earlier releases, kept for deployments that configured one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol

from schemas.enums import ModerationCategory as C

from .lexicon import CompiledLexicon
from .normalize import fold, normalize

#: category -> score, 0 to 1
Scores = dict[str, float]

#: words that aim insulting language at someone: profanity with one of them is harassment
_TARGETED = re.compile(r"(?<![a-z])(you|u|ur|your|youre|you're|yourself|ya|he|she|they|him|her|them)(?![a-z])")
#: how much of the profanity probability counts as harassment, aimed at someone and not
TARGETED_WEIGHT = 0.9
UNTARGETED_WEIGHT = 0.45


class TextClassifier(Protocol):
    #: name reported in verdicts and audit records
    name: str

    def scores(self, texts: Sequence[str]) -> list[Scores]:
        """Every category's score for each text (CPU work: callers run it off the event loop, but for batches
        of at most `INLINE_CHARS` characters when the classifier says it is cheap: `inline`)."""
        ...


#: the most characters a batch may hold for a cheap classifier (`inline = True`) to score it on the caller's
#: event loop: the lexicons and the profanity model take about 0.13 ms for a 50-character prompt (AMD EPYC),
#: while handing it to a thread and back took 0.42 ms alone and 2.4-7 ms in a busy stack (the prompt stage's
#: `stage_ms`); 2,000 characters bound what one batch holds the loop for to a few milliseconds
INLINE_CHARS = 2000


def _profanity_model() -> Callable[[list[str]], Sequence[float]]:
    """alt-profanity-check's model, applied without scikit-learn's per-call overhead (profanity.py)."""
    from .profanity import FastProfanity  # needs the `moderation` extra

    return FastProfanity()


class CategoryClassifier:
    """Lexicons plus the profanity model (see the module docstring)."""

    name = "genloom-lexicon+alt-profanity-check"
    #: cheap enough to score short batches on the caller's loop (`INLINE_CHARS`)
    inline = True

    def __init__(self, profanity: Callable[[list[str]], Sequence[float]] | None = None) -> None:
        self._lexicon = CompiledLexicon.build()
        self._profanity = profanity if profanity is not None else _profanity_model()

    def scores(self, texts: Sequence[str]) -> list[Scores]:
        if not texts:
            return []
        normalized = [normalize(t) for t in texts]
        profane = self._profanity(normalized)  # one call for the batch: the model is vectorised
        out: list[Scores] = []
        for text, p in zip(normalized, profane):  # hot loop: once over the batch
            scores = self._lexicon.score(fold(text))
            weight = TARGETED_WEIGHT if _TARGETED.search(text) else UNTARGETED_WEIGHT
            scores[C.HARASSMENT] = max(scores[C.HARASSMENT], float(p) * weight)
            out.append({c.value: round(v, 4) for c, v in scores.items()})
        return out


class BlocklistClassifier:
    """Text that contains any listed term as a whole word (after normalisation) scores 1 in
    `category`; nothing else scores."""

    name = "blocklist"
    #: cheap enough to score short batches on the caller's loop (`INLINE_CHARS`)
    inline = True

    def __init__(self, terms: Sequence[str], category: str = "blocklist") -> None:
        self._pattern = term_pattern(terms)
        self._category = category

    def scores(self, texts: Sequence[str]) -> list[Scores]:
        return [{self._category: 1.0 if self._pattern is not None and self._pattern.search(fold(t)) else 0.0}
                for t in texts]


class ProfanityClassifier:
    """alt-profanity-check alone: its probability as the one score `profanity`."""

    name = "alt-profanity-check"
    #: cheap enough to score short batches on the caller's loop (`INLINE_CHARS`)
    inline = True

    def __init__(self) -> None:
        self._predict = _profanity_model()

    def scores(self, texts: Sequence[str]) -> list[Scores]:
        if not texts:
            return []
        return [{"profanity": float(p)} for p in self._predict([normalize(t) for t in texts])]


def term_pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    """One expression for whole-word terms, matched in folded text (so "d4rn" meets "darn")."""
    cleaned = sorted({fold(t.strip()) for t in terms if t.strip()}, key=len, reverse=True)
    if not cleaned:
        return None
    return re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(t) for t in cleaned) + r")(?![a-z0-9])")
