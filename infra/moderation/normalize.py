"""Undo the usual ways of hiding a word from a filter, so that lexicons and models see the word.

`normalize` folds case and compatibility forms (NFKC), maps look-alike letters of other scripts
(Cyrillic and Greek homoglyphs) and l33t digits and symbols to the Latin letters they stand for,
joins letters spelled out with separators ("k i l l", "k.i.l.l", "k-i-l-l") and shortens repeated
letters ("fuuuck"). The lexicons are written in the same folded form (`fold`), so "kill" in a
lexicon meets "kiiill", "k1ll" and "kіll" (Cyrillic і) in a text.
"""

from __future__ import annotations

import re
import unicodedata

#: letters of other scripts that look like Latin ones (the ones seen in filter evasion)
_HOMOGLYPHS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ɡ": "g", "ո": "n",
    "ս": "u", "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ß": "ss", "ı": "i", "ł": "l", "ø": "o", "đ": "d",
})
#: digits and symbols written for letters, replaced only inside a word that has letters too
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                       "@": "a", "$": "s", "|": "l", "!": "i", "+": "t", "€": "e", "¡": "i"})
#: a word with at least one letter and at least one l33t character between letters or at its start
_LEET_WORD = re.compile(r"(?<![\w@$|!+€¡])[\w@$|!+€¡]*[a-z][\w@$|!+€¡]*")
_HAS_LEET = re.compile(r"[0-9@$|!+€¡]")
#: three or more single letters (or l33t symbols) with the same separator between each: "k i l l",
#: "k.i.l.l" ("K.I.L.L Y.O.U" stays two words: the space is not the separator of either)
_SPELLED = re.compile(r"(?<![\w])[a-z0-9@$]([\s.\-_*·])(?:[a-z0-9@$]\1)+[a-z0-9@$](?![\w])")
#: a letter repeated three times or more
_RUN3 = re.compile(r"([a-z])\1{2,}")
#: any repeated letter (the folded form keeps one)
_RUN2 = re.compile(r"([a-z])\1+")
_MARKS = re.compile(r"[\u0300-\u036f\u200b-\u200f\u2060\ufeff]")


def _deleet(match: re.Match[str]) -> str:
    word = match.group(0)
    if not _HAS_LEET.search(word):
        return word
    stripped = word.rstrip("!")  # "kill!" is a word and an exclamation mark, not "killi"
    return stripped.translate(_LEET) + word[len(stripped):]


def normalize(text: str) -> str:
    """Lower-case text with homoglyphs, l33t and spelled-out letters undone and letter runs cut to two."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = _MARKS.sub("", text).translate(_HOMOGLYPHS)
    text = unicodedata.normalize("NFKC", text)
    text = _SPELLED.sub(lambda m: m.group(0).replace(m.group(1), ""), text)
    text = _LEET_WORD.sub(_deleet, text)
    return _RUN3.sub(r"\1\1", text)


def fold(text: str) -> str:
    """`normalize`, then every repeated letter cut to one: the form lexicons are matched in."""
    return _RUN2.sub(r"\1", normalize(text))
