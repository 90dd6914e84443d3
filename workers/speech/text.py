"""Split text into sentences a synthesiser can speak one at a time.

Sentence boundaries keep abbreviations, initials and decimals inside their sentence; a sentence
longer than a bound is cut at a clause mark or a space, so no single synthesis call runs long.
"""

from __future__ import annotations

import re

#: the default longest piece, in characters: about 10 s of speech, under 2 s of CPU with piper
DEFAULT_MAX_SENTENCE_CHARS = 200

# A "." after one of these words does not end a sentence (compared lower-case, without the dot).
_ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "rev", "fr", "gen", "col",
        "lt", "sgt", "capt", "gov", "sen", "rep", "hon", "vs", "no", "nos", "fig", "figs",
        "approx", "dept", "est", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr",
        "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "p", "pp", "vol", "ch",
    }
)  # fmt: skip

# Sentence-ending punctuation, with any closing quotes or brackets, followed by space or the end.
_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s|$)")
_PARAGRAPH = re.compile(r"\n\s*\n")
_SPACES = re.compile(r"\s+")
_WORD_BEFORE = re.compile(r"(\S+)$")
_INITIALISM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]|[A-Za-z]")  # e.g, U.S, J (as in "J. Smith")
_CLAUSE_MARK = re.compile(r"(?:[,;:]|\s[\u2013\u2014-])(?=\s)")
_SPEAKABLE = re.compile(r"\w")


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_SENTENCE_CHARS) -> list[str]:
    """Sentences of `text` in order, whitespace collapsed, none longer than `max_chars`.

    Pieces with nothing to say (only punctuation or space) are dropped.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    out: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        for sentence in _sentences(_SPACES.sub(" ", paragraph).strip()):
            out.extend(p for p in bound_length(sentence, max_chars) if _SPEAKABLE.search(p))
    return out


def _sentences(paragraph: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _END.finditer(paragraph):
        if _is_boundary(paragraph, match):
            pieces.append(paragraph[start : match.end()].strip())
            start = match.end()
    pieces.append(paragraph[start:].strip())
    return [p for p in pieces if p]


def _is_boundary(paragraph: str, match: re.Match[str]) -> bool:
    following = paragraph[match.end() :].lstrip()
    if following[:1].islower():  # "e.g. this", "Wait... what"
        return False
    if match.group().rstrip("\"'\u201d\u2019)]") != ".":
        return True
    before = _WORD_BEFORE.search(paragraph, 0, match.start())
    if before is None:
        return True
    word = before.group(1).lstrip("\"'\u201c\u2018([")
    return word.lower() not in _ABBREVIATIONS and not _INITIALISM.fullmatch(word)


def bound_length(sentence: str, max_chars: int) -> list[str]:
    """`sentence` cut into pieces of at most `max_chars`: after the last clause mark
    (, ; : or a dash) in reach, else at the last space, else mid-word."""
    pieces: list[str] = []
    rest = sentence.strip()
    while len(rest) > max_chars:
        cut = _cut_point(rest, max_chars)
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return pieces


def _cut_point(text: str, max_chars: int) -> int:
    window = text[: max_chars + 1]  # a space right after the limit is still a clean cut
    marks = [m.end() for m in _CLAUSE_MARK.finditer(window) if m.end() <= max_chars]
    # a clause mark in the first quarter would leave a stub: prefer a later space then
    if marks and marks[-1] > max_chars // 4:
        return marks[-1]
    space = window.rfind(" ")
    return space if space > 0 else max_chars
