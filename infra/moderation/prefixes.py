"""`HoldTerms`: whether the end of a text could still grow into a term that blocks.

The output gate's default mode ("checked") releases each token as soon as the text so far passes.
That is safe only if the token's trailing partial word cannot become a blocked word with the next
token ("fu" -> "fuck", "d a r" -> "darn"): while the end of the text is the beginning of such a term,
the token is held (bounded by `hold_tokens` in the gate) and checked with what follows.

The terms are the policy's block list, the words of the category lexicons that score on their own,
and the words alt-profanity-check's model calls profane on their own (read from its weights). All are
matched in folded form (normalize.fold: lower case, l33t, homoglyphs and repeats undone, spelled-out
letters joined), as the classifiers see them. A trailing word that is itself a complete everyday
word ("in", "to", "come": a stop word, or a word of four letters or more the profanity model scores
clean) is not held for the
longer terms it begins: if the next token completes one, that token's check blocks it, and all that
was released is the everyday word. Where folding makes an everyday word look like a term ("as" and
"ass", "but" and "butt"), only the word as written is exempt, so an answer that begins "As" or "But"
is not held a token, and "A$$" still is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from .normalize import fold

#: characters of a text's end that are folded to find its trailing fragment
TAIL_CHARS = 48
#: answers `HoldTerms` keeps, for texts asked about again
RECENT = 4096
#: single letters with a separator after each, at the end of a text ("k i l", "k.i.l."): a word being spelled out
_SPELLING = re.compile(r"(?:(?<![a-z0-9])[a-z0-9][\s.\-_*·]+)+[a-z0-9]?$")
_WORD_START = re.compile(r"(?<![a-z0-9])[a-z0-9]")
#: the text's last word as written (letters only: a l33t character makes it another word)
_LAST_WORD = re.compile(r"(?<![\w@$|!+€¡])[^\W\d_]+$")


class HoldTerms:
    """The prefixes of a set of terms (folded), and whether a text ends with one of them."""

    def __init__(self, terms: Iterable[str], words: Iterable[str] = ()) -> None:
        terms = [t.strip().lower() for t in terms]
        folded = {fold(t) for t in terms}
        words = {w.strip().lower() for w in words} - set(terms)
        #: complete everyday words (folded): not held as the start of a longer term
        self._words = frozenset(fold(w) for w in words) - folded
        #: everyday words whose folded form is also a term's ("as" and "ass", "but" and "butt": folding
        #: shortens repeats), exempt only as written: "As" is released, "A$$" and "Ass" are still held
        self._written = frozenset(w for w in words if fold(w) in folded)
        #: proper prefixes: a whole term at the end is checked at once (the check sees it), not held
        self._prefixes = frozenset(t[:n] for t in folded if t for n in range(1, len(t)))
        #: the answers for the texts asked about last (the gate asks twice for each token: once in the dry
        #: run that batches the classifier's calls, once as it handles the token)
        self._recent: dict[str, bool] = {}

    def holds(self, text: str) -> bool:
        """True when the text ends with the start of a term, short of the whole term: the end of the
        text (from a word start) is a prefix of a term, or its spelled-out letters are."""
        if not self._prefixes:
            return False
        held = self._recent.get(text)
        if held is None:
            if len(self._recent) >= RECENT:
                self._recent.clear()
            held = self._recent[text] = self._holds(text)
        return held

    def _holds(self, text: str) -> bool:
        tail = fold(text[-TAIL_CHARS:])
        spelled = _SPELLING.search(tail)
        if spelled and re.sub(r"[^a-z0-9]", "", spelled.group(0)) in self._prefixes:
            return True
        if self._written and (last := _LAST_WORD.search(text)) and last.group(0).lower() in self._written:
            written = fold(last.group(0))
        else:
            written = None
        return any((end := tail[m.start():]) in self._prefixes and end not in self._words and end != written
                   for m in _WORD_START.finditer(tail))


def _lexicon_words() -> set[str]:
    """Words of the lexicon phrases (four letters or more) that score in some category on their own."""
    from .lexicon import LEXICON, CompiledLexicon

    lexicon = CompiledLexicon.build()
    words = {w for entries in LEXICON.values() for phrase, _ in entries for w in re.findall(r"[a-z]{4,}", phrase)}
    return {w for w in words if max(lexicon.score(fold(w)).values()) > 0}


def _model_words(threshold: float = 0.5) -> tuple[set[str], set[str]]:
    """The words alt-profanity-check's model scores at `threshold` or more as a text of their own, and
    the everyday words (its stop words and the words it scores below `threshold`)."""
    try:
        from .profanity import FastProfanity

        model = FastProfanity()
    except ImportError:  # the `moderation` extra is not installed: the lexicons and block lists still hold
        return set(), set()
    scores = model.single_words()
    # a scored word shorter than four letters may be a fragment ("da", "fu"): only stop words count that short
    return ({w for w, p in scores.items() if p >= threshold},
            {w for w, p in scores.items() if p < threshold and len(w) >= 4} | set(model.stop_words))


@functools.cache
def default_terms() -> frozenset[str]:
    """The terms every policy holds for (its own block list comes on top)."""
    return frozenset(_lexicon_words() | _model_words()[0])


@functools.cache
def everyday_words() -> frozenset[str]:
    """Complete words not held as the start of a longer term (see the module docstring)."""
    return frozenset(_model_words()[1] - default_terms())
