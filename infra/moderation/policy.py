"""Tenant moderation policies (pure): from category scores to a decision.

A policy holds a threshold per category (a score at or above it flags the text; a category can be
turned off), a block list (any term blocks, whatever the scores), an allow list (terms masked out
before the text is scored: a medical tenant allows "breast cancer") and what to do when the
classifier fails or is too slow: fail closed (block, the default) or open (release, noted).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from schemas.enums import ModerationCategory as C

from .normalize import fold
from .text import Scores, term_pattern

#: the category a block-list term is reported under (not an OpenAI category: the tenant chose it)
BLOCKLIST = "blocklist"
#: how the output gate releases tokens: "checked", each as soon as the text so far passes (held only
#: while it could grow into a blocked term); "windowed", in checked windows (a sentence or N tokens)
STREAM_MODES = ("checked", "windowed")

#: Default thresholds: the score at or above which a category flags text. 0.5 asks for one strong
#: sign (a phrase of weight 0.6 or more, or profanity aimed at someone) or two weak ones; sexual
#: content involving minors is flagged on any sign at all. docs/benchmarks.md gives the precision and
#: recall these reach on the quality set.
DEFAULT_THRESHOLDS: dict[str, float] = {c.value: 0.5 for c in C} | {C.SEXUAL_MINORS.value: 0.3}


class UnknownCategory(ValueError):
    """A policy names a category that is not in the taxonomy."""


def check_categories(names: Sequence[str], where: str) -> None:
    unknown = [n for n in names if n not in DEFAULT_THRESHOLDS]
    if unknown:
        raise UnknownCategory(f"{where} names unknown moderation categor{'y' if len(unknown) == 1 else 'ies'}"
                              f" {', '.join(repr(u) for u in unknown)}: use {', '.join(DEFAULT_THRESHOLDS)}")


@dataclass(frozen=True)
class Decision:
    """What a policy decided about one text."""

    allowed: bool
    #: categories at or over their threshold (and `blocklist` for a block-list term)
    categories: list[str]
    scores: Scores
    #: why, when no category decided (block list, classifier failure)
    reason: str | None = None

    @property
    def score(self) -> float:
        """The highest score among the categories that fired, else the highest of all."""
        pool = [self.scores.get(c, 1.0) for c in self.categories] or list(self.scores.values()) or [0.0]
        return max(0.0, min(1.0, max(pool)))


@dataclass(frozen=True)
class Policy:
    #: category -> threshold; None turns the category off
    thresholds: Mapping[str, float | None] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    block: re.Pattern[str] | None = None
    allow: re.Pattern[str] | None = None
    fail_open: bool = False
    #: the block list's terms as given (the output gate holds a token while the text could grow into one)
    block_terms: tuple[str, ...] = ()
    #: how the output gate releases this tenant's tokens ("checked" or "windowed"); None: the deployment's mode
    stream: str | None = None

    @classmethod
    def build(cls, *, thresholds: Mapping[str, float | str | None] | None = None, block: Sequence[str] = (),
              allow: Sequence[str] = (), fail_open: bool = False, where: str = "the policy",
              stream: str | None = None) -> Policy:
        """A policy from its parts: `thresholds` overrides the defaults per category ("off" or None: off)."""
        overrides = dict(thresholds or {})
        check_categories(list(overrides), where)
        merged: dict[str, float | None] = dict(DEFAULT_THRESHOLDS)
        for name, value in overrides.items():
            if value is None or value == "off":
                merged[name] = None
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: threshold of {name!r} is {value!r}: give a number from 0 to 1,"
                                 " or \"off\"") from None
            if not 0.0 <= number <= 1.0:
                raise ValueError(f"{where}: threshold of {name!r} is {number}: give a number from 0 to 1, or \"off\"")
            merged[name] = number
        if stream not in (None, *STREAM_MODES):
            raise ValueError(f"{where}: window_mode is {stream!r}: use one of {list(STREAM_MODES)}")
        return cls(merged, term_pattern(block), term_pattern(allow), fail_open,
                   tuple(t.strip() for t in block if t.strip()), stream)

    def mask(self, text: str) -> str:
        """The text to score: allowed terms blanked out (matched in folded text, so l33t spellings too)."""
        if self.allow is None:
            return text
        return self.allow.sub(" ", fold(text))

    def decide(self, text: str, scores: Scores) -> Decision:
        if self.block is not None:
            if self.block.search(fold(text)):
                return Decision(False, [BLOCKLIST], {**scores, BLOCKLIST: 1.0}, "a term on the tenant's block list")
        fired = [c for c, s in scores.items() if (t := self.thresholds.get(c)) is not None and s >= t]
        return Decision(not fired, fired, scores)

    def on_failure(self, error: str) -> Decision:
        """The decision when the classifier failed or ran out of time."""
        if self.fail_open:
            return Decision(True, [], {}, f"moderation unavailable ({error}); released: the tenant's policy fails open")
        return Decision(False, [], {}, f"moderation unavailable ({error}); withheld: the policy fails closed")


@dataclass(frozen=True)
class PolicyBook:
    """The default policy and each tenant's own."""

    default: Policy = field(default_factory=Policy)
    tenants: Mapping[str, Policy] = field(default_factory=dict)

    def of(self, tenant: str | None) -> Policy:
        return self.tenants.get(tenant, self.default) if tenant else self.default
