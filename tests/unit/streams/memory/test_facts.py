"""The fact finder: what it finds, what a later statement replaces, what it never keeps."""

from __future__ import annotations

import time

import pytest

from infra.memory.base import Fact
from streams.memory.facts import MAX_SCAN_CHARS, fact_id, find_facts, supersedes


def pairs(text: str) -> list[tuple[str, str]]:
    return [(f.relation, f.object.lower()) for f in find_facts(text)]


@pytest.mark.parametrize("text, expected", [
    ("My favourite colour is teal.", [("favourite_colour", "teal")]),
    ("my favorite food is pizza", [("favourite_food", "pizza")]),
    ("I think navy blue is my favourite colour.", [("favourite_colour", "navy blue")]),
    ("I'm allergic to shellfish and peanuts.", [("allergic_to", "shellfish"), ("allergic_to", "peanuts")]),
    ("I have a severe peanut allergy.", [("allergic_to", "peanut")]),
    ("I'm vegetarian, by the way.", [("diet", "vegetarian")]),
    ("I've gone vegan this year", [("diet", "vegan")]),
    ("I really love jazz too", [("likes", "jazz")]),
    ("I actually love sushi", [("likes", "sushi")]),
    ("I prefer tea over coffee", [("likes", "tea")]),
    ("I hate mushrooms", [("dislikes", "mushrooms")]),
    ("I work as a nurse at <ORG_1>", [("occupation", "nurse")]),
    ("I'm a software engineer", [("occupation", "software engineer")]),
    ("Please keep answers short and use bullet points.", [("answer_length", "short"), ("answer_format", "bullet points")]),
    ("Explain in detail please", [("answer_length", "detailed")]),
    ("Answer in French please", [("answer_language", "french")]),
    ("I like watercolour paintings", [("image_style", "watercolour")]),
    ("I like cinematic videos", [("video_style", "cinematic")]),
    ("Speak slowly please", [("speech_pace", "slow")]),
    ("I like a calm voice", [("speech_pace", "slow")]),
])
def test_finds_what_is_stated(text, expected):
    assert pairs(text) == expected


@pytest.mark.parametrize("text", [
    "I'd like a recipe for dinner",
    "Would you like me to explain?",
    "I love it",
    "I'm a bit tired today",
    "Do you remember my favourite colour?",
    "What is the capital of France?",
    "",
    "   ",
])
def test_finds_nothing_in_requests_questions_and_filler(text):
    assert find_facts(text) == []


def test_contradiction_in_one_message_keeps_the_last():
    assert pairs("My favourite colour is red, no wait, it's teal.") == [("favourite_colour", "teal")]
    assert pairs("My favourite colour is red. Actually, my favourite colour is green.") == [
        ("favourite_colour", "green")]
    assert pairs("I like olives. I don't like olives any more.") == [("dislikes", "olives")]


def test_negations_become_facts_that_replace():
    assert pairs("I'm no longer vegetarian.") == [("diet", "not vegetarian")]
    assert pairs("I'm not allergic to cats any more") == [("not_allergic_to", "cats")]
    assert pairs("I don't like olives any more") == [("dislikes", "olives")]
    found = find_facts("I'm no longer vegetarian.")[0]
    assert found.text == "The user is no longer vegetarian."


@pytest.mark.parametrize("text", [
    "My favourite singer is <PERSON_1>",
    "I'm allergic to <PERSON_2>",
    "I love <EMAIL_1>",
    "My favourite number is 4242424242",
    "My favourite website is https://example.com",
    "I really love Margaret Thornbury",
])
def test_never_keeps_placeholders_or_personal_data(text):
    assert find_facts(text) == []


@pytest.mark.parametrize("text", [
    "我最喜欢的颜色是红色 🎉", "مرحبا بك", "🙂" * 5000, "a" * 1_000_000, "I like " * 50_000, "\ud800 lone surrogate",
    "my favourite " * 20_000, "<" * 10_000, "I'm allergic to " + "x, " * 30_000,
])
def test_bad_input_never_raises_and_is_bounded(text):
    began = time.perf_counter()
    found = find_facts(text)
    assert isinstance(found, list)
    assert time.perf_counter() - began < 30  # a generous bound: catastrophic backtracking would never end


def test_scans_only_the_head_of_a_huge_text():
    assert pairs("x" * MAX_SCAN_CHARS + " My favourite colour is teal.") == []
    assert pairs("My favourite colour is teal. " + "x" * 100_000) == [("favourite_colour", "teal")]


def fact(id: str, relation: str, obj: str, *, superseded_by: str | None = None) -> Fact:
    return Fact(id=id, tenant="t", user="u", subject="user", relation=relation, object=obj, text="", created_at=1.0,
                superseded_by=superseded_by)


def test_supersedes_single_valued_by_relation_multi_valued_by_object():
    current = [fact("a", "favourite_colour", "red"), fact("b", "allergic_to", "peanuts"),
               fact("c", "allergic_to", "shellfish"), fact("d", "likes", "olives"), fact("e", "diet", "vegetarian"),
               fact("old", "favourite_colour", "blue", superseded_by="a")]
    assert supersedes(fact("n1", "favourite_colour", "teal"), current) == ["a"]
    assert supersedes(fact("n2", "allergic_to", "cats"), current) == []
    assert supersedes(fact("n3", "not_allergic_to", "Peanuts"), current) == ["b"]
    assert supersedes(fact("n4", "dislikes", "olives"), current) == ["d"]
    assert supersedes(fact("n5", "diet", "not vegetarian"), current) == ["e"]
    assert supersedes(fact("n6", "likes", "olives"), current) == ["d"]  # restated: one record kept
    assert supersedes(current[0], current) == []  # never itself


def test_fact_ids_are_deterministic_and_scoped():
    one = fact_id("t", "u", "favourite_colour", "Teal", "job1")
    assert one == fact_id("t", "u", "favourite_colour", "teal!", "job1")
    assert one != fact_id("t", "u2", "favourite_colour", "teal", "job1")
    assert one != fact_id("t2", "u", "favourite_colour", "teal", "job1")
    assert one != fact_id("t", "u", "favourite_colour", "teal", "job2")
    assert len(one) <= 128
