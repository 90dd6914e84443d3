"""The retrieval engine's pure decisions: ranking, dedupe, supersede, budget, and the request per modality."""

from __future__ import annotations

import pytest

from infra.memory.base import Fact, Interaction
from infra.redis.sessions import Turn
from schemas import parse_request
from schemas.enums import Role
from schemas.requests import MAX_PROMPT_CHARS
from streams.enrichment.logic import (
    HEADER, Candidate, Hit, Weights, candidates, enrich, estimate_tokens, score, select,
)

NOW = 1_000_000_000.0
DAY = 86400.0


def fact(id: str, relation: str, obj: str, text: str, *, at: float = NOW - DAY, kind: str = "fact",
         superseded_by: str | None = None, importance: float = 0.6) -> Fact:
    return Fact(id=id, tenant="t", user="u", subject="user", relation=relation, object=obj, text=text, kind=kind,
                created_at=at, importance=importance, superseded_by=superseded_by)


def chat(*messages: tuple[str, str], **extra):
    return parse_request({"tenant": "t", "user": "u", "modality": "text", **extra,
                          "params": {"messages": [{"role": r, "content": c} for r, c in messages]}})


def cand(id: str, similarity: float, *, text: str | None = None, at: float = NOW, importance: float = 0.5,
         **kw) -> Candidate:
    return Candidate(id, kw.pop("kind", "interaction"), text or f"memory {id}", similarity, at, importance, **kw)


def test_score_weighs_similarity_by_recency_and_importance():
    w = Weights(half_life_s=10 * DAY, recency=0.4, importance=0.5, floor=0.1)
    fresh = score(cand("a", 0.8, at=NOW), NOW, w)
    old = score(cand("b", 0.8, at=NOW - 10 * DAY), NOW, w)
    very_old = score(cand("c", 0.8, at=NOW - 1000 * DAY), NOW, w)
    assert fresh > old > very_old > 0
    assert old == pytest.approx(fresh * 0.8)  # one half-life: (1 - 0.4 + 0.4 * 0.5)
    assert very_old == pytest.approx(fresh * 0.6, rel=1e-3)
    important = score(cand("d", 0.8, importance=1.0), NOW, w)
    assert important > fresh
    assert score(cand("e", 0.8, importance=0.0), NOW, w) == pytest.approx(important * 0.5)


def test_select_ranks_drops_below_floor_and_fits_top_k():
    found = [cand("low", 0.05), cand("mid", 0.5), cand("top", 0.9), cand("x", 0.6), cand("y", 0.55)]
    chosen = select(found, now=NOW, top_k=3, budget_tokens=1000)
    assert [c.candidate.id for c in chosen] == ["top", "x", "y"]
    chosen = select(found, now=NOW, top_k=10, budget_tokens=1000)
    assert "low" not in [c.candidate.id for c in chosen]


def test_select_fits_the_token_budget_with_shorter_ones_further_down():
    long = cand("long", 0.9, text="word " * 200)
    short = cand("short", 0.5, text="The user is vegan.")
    chosen = select([long, short], now=NOW, top_k=8, budget_tokens=64)
    assert [c.candidate.id for c in chosen] == ["short"]
    assert sum(estimate_tokens(c.candidate.text) for c in chosen) <= 64


def test_select_drops_duplicates_by_text_and_by_fact():
    found = [cand("a", 0.9, text="The user likes jazz."), cand("b", 0.8, text="the user likes   JAZZ"),
             cand("c", 0.7, text="Likes jazz music", kind="fact", relation="likes", object="Jazz"),
             cand("d", 0.6, text="The user enjoys jazz", kind="fact", relation="likes", object="jazz "),
             cand("e", 0.5, text="Something else entirely")]
    assert [c.candidate.id for c in select(found, now=NOW, top_k=8, budget_tokens=1000)] == ["a", "c", "e"]


def test_pinned_preferences_go_first_whatever_their_similarity():
    found = [cand("a", 0.9), cand("pref", None, kind="preference", relation="answer_length", object="short",
                                  pinned=True)]
    chosen = select(found, now=NOW, top_k=1, budget_tokens=1000)
    assert [c.candidate.id for c in chosen] == ["pref"]


def test_estimate_tokens_counts_other_scripts_per_character():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("我最喜欢的颜色") == 7
    assert estimate_tokens("🙂🙂") == 2


def test_a_hit_on_a_superseded_fact_brings_its_newest_successor():
    facts = [fact("red", "favourite_colour", "red", "The user's favourite colour is red.", superseded_by="green",
                  at=NOW - 9 * DAY),
             fact("green", "favourite_colour", "green", "The user's favourite colour is green.", superseded_by="teal",
                  at=NOW - 5 * DAY),
             fact("teal", "favourite_colour", "teal", "The user's favourite colour is teal.", at=NOW - DAY)]
    found = candidates([Hit("red", "fact", 0.8, NOW - 9 * DAY)], facts, [], modality="text")
    assert [(c.id, c.similarity, c.supersedes) for c in found] == [("teal", 0.8, ("green", "red"))]
    enriched = enrich(chat(("user", "What colour should I paint my room?")), found, now=NOW, top_k=8,
                      budget_tokens=256)
    assert [(m.id, m.supersedes) for m in enriched.memories] == [("teal", ["green", "red"])]
    assert "teal" in enriched.request.params.messages[0].content
    assert "red" not in enriched.request.params.messages[0].content
    direct = candidates([Hit("teal", "fact", 0.7, NOW)], facts, [], modality="text")
    assert [(c.id, c.supersedes) for c in direct] == [("teal", ("green", "red"))]


def test_a_fact_whose_successor_is_gone_is_dropped():
    facts = [fact("red", "favourite_colour", "red", "The user's favourite colour is red.", superseded_by="erased")]
    assert candidates([Hit("red", "fact", 0.8, NOW)], facts, [], modality="text") == []


def test_an_interaction_stating_a_contradicted_fact_is_left_out_and_a_current_one_stands_in():
    facts = [fact("red", "favourite_colour", "red", "The user's favourite colour is red.", superseded_by="teal"),
             fact("teal", "favourite_colour", "teal", "The user's favourite colour is teal.")]
    old = Interaction(id="j1", tenant="t", user="u", session=None, modality="text",
                      prompt="My favourite colour is red, remember that.", answer="Noted!", created_at=NOW - 9 * DAY)
    new = Interaction(id="j2", tenant="t", user="u", session=None, modality="text",
                      prompt="My favourite colour is teal now.", answer="Noted!", created_at=NOW - DAY)
    plain = Interaction(id="j3", tenant="t", user="u", session=None, modality="text",
                        prompt="How do I repot a fern?", answer="Gently.", created_at=NOW - DAY)
    hits = [Hit("j1", "interaction", 0.7, NOW), Hit("j2", "interaction", 0.6, NOW), Hit("j3", "interaction", 0.5, NOW)]
    found = candidates(hits, facts, [old, new, plain], modality="text")
    assert sorted(c.id for c in found) == ["j3", "teal"]
    assert next(c for c in found if c.id == "j3").text.startswith("Earlier the user asked: How do I repot a fern?")


def test_hits_of_unknown_ids_are_ignored():
    assert candidates([Hit("nope", "fact", 0.9, NOW), Hit("gone", "interaction", 0.9, NOW)], [], [],
                      modality="text") == []


def test_chat_memory_goes_after_the_callers_system_prompt_and_keeps_every_message():
    facts = [fact("a", "allergic_to", "shellfish", "The user is allergic to shellfish."),
             fact("b", "answer_length", "short", "The user prefers short, concise answers.", kind="preference")]
    request = chat(("system", "You are a chef."), ("user", "Suggest a dinner"), ("assistant", "Paella?"),
                   ("user", "Something else"))
    found = candidates([Hit("a", "fact", 0.6, NOW)], facts, [], modality="text")
    enriched = enrich(request, found, now=NOW, top_k=8, budget_tokens=256)
    messages = enriched.request.params.messages
    assert [m.role for m in messages] == [Role.SYSTEM, Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.USER]
    assert messages[0].content == "You are a chef."
    assert messages[1].content.startswith(HEADER)
    assert "- The user prefers short, concise answers." in messages[1].content
    assert "- The user is allergic to shellfish." in messages[1].content
    assert [m.content for m in messages[2:]] == ["Suggest a dinner", "Paella?", "Something else"]
    assert {m.id for m in enriched.memories} == {"a", "b"}
    assert next(m for m in enriched.memories if m.id == "b").similarity is None


def test_chat_without_room_for_another_message_is_left_as_it_is():
    request = chat(*[("user", f"turn {i}") for i in range(512)])
    found = [cand("a", 0.9)]
    enriched = enrich(request, found, now=NOW, top_k=8, budget_tokens=256)
    assert enriched.request is request and enriched.memories == []


def test_a_raw_prompt_gets_no_memory_message():
    """A `/v1/completions` prompt is continued as it is: a system message would become part of its text."""
    request = parse_request({"tenant": "t", "user": "u", "modality": "text",
                             "params": {"messages": [{"role": "user", "content": "Once upon a time"}], "raw": True}})
    enriched = enrich(request, [cand("a", 0.9)], now=NOW, top_k=8, budget_tokens=256)
    assert enriched.request is request and enriched.memories == []


def test_nothing_relevant_leaves_the_request_alone():
    request = chat(("user", "hello"))
    enriched = enrich(request, [cand("a", 0.01)], now=NOW, top_k=8, budget_tokens=256)
    assert enriched.request is request and enriched.memories == []


def test_session_turns_already_in_the_request_are_not_repeated():
    request = chat(("user", "What about Rome?"))
    turns = [Turn("user", "What about Rome?", "j9", NOW), Turn("assistant", "Rome is lovely in May.", "j9", NOW)]
    found = candidates([], [], [], modality="text", turns=turns, exclude_texts=[m.content for m in request.params.messages])
    assert [c.text for c in found] == ["Earlier in this conversation you answered: Rome is lovely in May."]


def image(prompt: str, modality: str = "image"):
    return parse_request({"tenant": "t", "user": "u", "modality": modality, "params": {"prompt": prompt}})


STYLE = [fact("s", "image_style", "watercolour", "The user likes images in a watercolour style.", kind="preference"),
         fact("j", "likes", "jazz", "The user likes jazz.", kind="preference")]


def test_image_gets_the_style_preference_appended():
    found = candidates([Hit("j", "fact", 0.9, NOW)], STYLE, [], modality="image")
    enriched = enrich(image("a lighthouse at dusk."), found, now=NOW, top_k=8, budget_tokens=256)
    assert enriched.request.params.prompt == "a lighthouse at dusk, in a watercolour style"
    assert [m.id for m in enriched.memories] == ["s"]


def test_video_falls_back_to_the_image_style_and_a_prompt_with_a_style_is_left_alone():
    found = candidates([], STYLE, [], modality="video")
    enriched = enrich(image("a cat surfing", "video"), found, now=NOW, top_k=8, budget_tokens=256)
    assert enriched.request.params.prompt.endswith("in a watercolour style")
    found = candidates([], STYLE, [], modality="image")
    own = image("a cat surfing, anime style")
    assert enrich(own, found, now=NOW, top_k=8, budget_tokens=256).request is own


def test_image_prompt_never_grows_past_its_limit():
    found = candidates([], STYLE, [], modality="image")
    full = image("x" * (MAX_PROMPT_CHARS - 5))
    enriched = enrich(full, found, now=NOW, top_k=8, budget_tokens=256)
    assert enriched.request is full and enriched.memories == []


def speech(**params):
    return parse_request({"tenant": "t", "user": "u", "modality": "speech", "params": {"input": "Hello", **params}})


PACE = [fact("p", "speech_pace", "slow", "The user prefers slow, calm speech.", kind="preference"),
        fact("v", "voice", "amy", "The user prefers the voice amy.", kind="preference")]


def test_speech_gets_pace_and_known_voice_only_where_the_caller_left_the_default():
    found = candidates([], PACE, [], modality="speech")
    enriched = enrich(speech(), found, now=NOW, top_k=8, budget_tokens=256, voices=frozenset({"amy", "joe"}))
    assert (enriched.request.params.speed, enriched.request.params.voice) == (0.85, "amy")
    assert {m.id for m in enriched.memories} == {"p", "v"}
    enriched = enrich(speech(speed=1.5, voice="joe2"), found, now=NOW, top_k=8, budget_tokens=256,
                      voices=frozenset({"amy"}))
    assert (enriched.request.params.speed, enriched.request.params.voice) == (1.5, "joe2")
    assert enriched.memories == []
    enriched = enrich(speech(), found, now=NOW, top_k=8, budget_tokens=256)  # amy is not installed here
    assert enriched.request.params.voice == "joe" and [m.id for m in enriched.memories] == ["p"]


def test_profile_preferences_count_unless_a_fact_says_the_same():
    found = candidates([], [], [], modality="text", preferences={"answer_language": "German", "unrelated": "x"})
    assert [(c.id, c.text, c.pinned) for c in found] == [
        ("profile:answer_language", "The user prefers answers in German.", True)]
    facts = [fact("l", "answer_language", "French", "The user prefers answers in French.", kind="preference")]
    found = candidates([], facts, [], modality="text", preferences={"answer_language": "German"})
    assert [c.id for c in found] == ["l"]
