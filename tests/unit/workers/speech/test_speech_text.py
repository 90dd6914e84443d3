from __future__ import annotations

import pytest

from workers.speech.text import bound_length, split_sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Smith paid $3.50. Then he left!", ["Dr. Smith paid $3.50.", "Then he left!"]),
        ("Pi is 3.14159 roughly. Version 2.0.1 shipped.", ["Pi is 3.14159 roughly.", "Version 2.0.1 shipped."]),
        ("Mrs. Jones met J. R. R. Tolkien. He said hi.", ["Mrs. Jones met J. R. R. Tolkien.", "He said hi."]),
        ("Use tea, e.g. green tea. The U.S. is big.", ["Use tea, e.g. green tea.", "The U.S. is big."]),
        ("Really?! Yes. \"Quoted.\" Done", ["Really?!", "Yes.", "\"Quoted.\"", "Done"]),
        ("Wait... what? Fine.", ["Wait... what?", "Fine."]),
        ("Title\n\nBody line one\nstill one. Two.", ["Title", "Body line one still one.", "Two."]),
        ("  Hello   world.  ", ["Hello world."]),
        ("One. ... !! Two.", ["One.", "Two."]),
        ("", []),
        (" \n\t ", []),
    ],
)  # fmt: skip
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_long_sentence_is_cut_after_a_comma_within_the_bound() -> None:
    sentence = "We walked along the river, past the mill and the old bridge, and then we rested."
    pieces = split_sentences(sentence, max_chars=40)
    assert pieces == ["We walked along the river,", "past the mill and the old bridge,", "and then we rested."]
    assert " ".join(pieces) == sentence


def test_long_sentence_without_commas_is_cut_at_spaces() -> None:
    pieces = bound_length("alpha beta gamma delta epsilon zeta eta theta", 12)
    assert all(len(p) <= 12 for p in pieces)
    assert " ".join(pieces) == "alpha beta gamma delta epsilon zeta eta theta"
    assert pieces[0] == "alpha beta"


def test_comma_near_the_start_does_not_leave_a_stub() -> None:
    pieces = bound_length("So, the quick brown fox jumps over the lazy dog today", 30)
    assert pieces[0] != "So,"
    assert all(len(p) <= 30 for p in pieces)


def test_a_word_longer_than_the_bound_is_cut_mid_word() -> None:
    assert bound_length("abcdefghij", 4) == ["abcd", "efgh", "ij"]


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        split_sentences("Hi.", max_chars=0)
