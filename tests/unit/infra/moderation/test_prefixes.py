"""HoldTerms: whether a text's end could still become a blocking term."""

from __future__ import annotations

import pytest

from infra.moderation.prefixes import HoldTerms, default_terms, everyday_words


@pytest.mark.parametrize(("text", "held"), [
    ("oh da", True),            # "darn" may follow
    ("oh darn", False),         # the whole term: checked now, not held
    ("oh dA", True),            # case folded
    ("oh d4", True),            # l33t: "d4" folds to "da"
    ("the d a r", True),        # spelled-out letters, joined
    ("oh day", False),
    ("oh da ", False),          # the word ended
    ("still", True),            # a multi-word term's start
    ("still ", True),
    ("still w", True),
    ("still here", False),
    ("", False),
])
def test_a_text_is_held_while_its_end_begins_a_term(text: str, held: bool) -> None:
    assert HoldTerms(["darn", "still water"]).holds(text) is held


def test_no_terms_hold_nothing() -> None:
    assert not HoldTerms([]).holds("anything at all")


def test_everyday_words_are_not_held_for_the_longer_terms_they_begin() -> None:
    assert HoldTerms(["goaway"]).holds("please go")
    assert not HoldTerms(["goaway"], words=["go"]).holds("please go")
    assert HoldTerms(["goaway"], words=["go"]).holds("please goa")


def test_an_everyday_word_that_folds_onto_a_term_is_exempt_only_as_written() -> None:
    # folding shortens repeats: "ass" folds to "as", "asshole" to "ashole"; "as" is a word of its own
    hold = HoldTerms(["ass", "asshole", "butt"], words=["as", "but", "the"])
    assert not hold.holds("As") and not hold.holds("so as") and not hold.holds("But")
    assert hold.holds("Ass") and hold.holds("A$$") and hold.holds("a s") and hold.holds("Assh")
    assert HoldTerms(["ass", "asshole"]).holds("As")
    assert HoldTerms(["kick asses"], words=["as"]).holds("kick as")  # a longer term's start is still held


def test_the_default_terms_hold_profanity_and_release_everyday_text() -> None:
    pytest.importorskip("profanity_check")
    hold = HoldTerms(default_terms(), everyday_words())
    assert "bitch" in default_terms() and "the" in everyday_words()
    assert hold.holds("you bitc") and hold.holds("what the fu")
    text = ""
    for piece in ["As", " a", " city", ",", " it", " is", " known", " for", " its", " museums", ",", " but", " not",
                  " for", " its", " parks", "."]:
        text += piece
        assert not hold.holds(text), text


def test_answers_are_kept_for_texts_asked_again_and_the_memory_is_bounded(monkeypatch) -> None:
    import infra.moderation.prefixes as prefixes

    monkeypatch.setattr(prefixes, "RECENT", 8)
    hold = HoldTerms(["darn"])
    asked = []
    real = hold._holds
    monkeypatch.setattr(hold, "_holds", lambda text: asked.append(text) or real(text))
    assert hold.holds("oh da") and hold.holds("oh da")
    assert not hold.holds("oh day")
    assert asked == ["oh da", "oh day"]  # the second question was answered from memory
    for i in range(50):
        assert hold.holds(f"word{i} da")
        assert len(hold._recent) <= 8
