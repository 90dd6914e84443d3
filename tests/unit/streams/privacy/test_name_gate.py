"""Which texts can hold a name spaCy would report (names.may_hold_name) and which presidio
recognizers are worth running on a text (engine.presidio_entities)."""

from __future__ import annotations

import pytest

from streams.privacy.engine import presidio_entities
from streams.privacy.names import COMMON_OPENERS, FIRST_NAMES, may_hold_name


@pytest.mark.parametrize("text", [
    "", "name a colour.", "i met john yesterday", "Name a colour. (3)", "What do bees make?",
    "I think so. Please help me; I'm stuck.", "Hi there! How are you?\n- Write a haiku\n* Explain it",
    'He said: "Thanks" and left.', "12345 !!! ???",
])
def test_texts_without_a_name_cue(text):
    assert not may_hold_name(text)


@pytest.mark.parametrize("text", [
    "What is the capital of France?",  # a capital inside a sentence
    "Margaret asked for the invoice.",  # a sentence-initial word that is not a common opener
    "Will you call Ann?", "tell Will hi",  # a name that is a word too is never an opener
    "Ask 田中 about it.", "مرحبا يا أحمد",  # letters of scripts without case
    "WHAT HAPPENED TO JOHN", "send it to McDonald", "iPhone help",  # capitals in other places
    "the plan. Sandra agreed",
])
def test_texts_with_a_name_cue(text):
    assert may_hold_name(text)


def test_no_opener_is_a_given_name():
    assert not COMMON_OPENERS & {n.lower() for n in FIRST_NAMES}
    assert not COMMON_OPENERS & {"will", "may", "mark", "bill", "rose", "grace", "hope", "frank", "jack"}


def test_presidio_runs_only_the_recognizers_that_can_find_something():
    assert presidio_entities("Name a colour. (3)") == []
    assert presidio_entities("What did Sandra say?") == ["PERSON"]
    assert presidio_entities("What did Sandra say?", ner=False) == []  # too long for spaCy
    assert presidio_entities("mail a@b.io") == ["EMAIL_ADDRESS"]
    assert presidio_entities("call 020 7946 0958") == ["PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE"]
