"""The semantic cache's pure parts: eligibility, scope, the in-process tier, the events of a hit."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import TextRequest, parse_request
from schemas.enums import CacheMode, EventType, FinishReason
from schemas.events import ModelInfo
from streams.cache.logic import (
    FIRST_SEQ,
    Answer,
    Hit,
    LocalTier,
    TenantPolicy,
    best,
    eligible,
    hit_events,
    key_terms,
    scope_of,
)
from streams.cache.tiers import Miss

MODEL = ModelInfo(id="m", device="cpu", dtype="float32")
NONE = TenantPolicy()


def chat(*messages: tuple[str, str], tenant: str = "t1", **params) -> TextRequest:
    body = {"modality": "text", "tenant": tenant, "model": "smol",
            "params": {"messages": [{"role": r, "content": c} for r, c in messages], "temperature": 0.0, **params}}
    cache = params.pop("cache", None)
    if cache:
        body["cache"] = cache
    return parse_request(body)


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def answer(job_id: str, text: str = "an answer", made: float = 1000.0) -> Answer:
    return Answer(job_id, text, FinishReason.STOP, MODEL, made)


# --- eligibility ---------------------------------------------------------------------------------

def test_greedy_chats_are_eligible_sampled_ones_only_when_opted_in():
    assert eligible(chat(("user", "hi")), NONE)
    sampled = chat(("user", "hi"), temperature=0.7)
    assert not eligible(sampled, NONE)
    assert eligible(sampled, TenantPolicy(opt_in=frozenset({"t1"})))
    assert eligible(sampled.model_copy(update={"cache": CacheMode.REUSE}), NONE)


@pytest.mark.parametrize("setting", [{"presence_penalty": 1.0}, {"frequency_penalty": -1.0},
                                     {"logit_bias": {5: 10.0}}, {"logprobs": True}])
def test_chats_with_penalties_bias_or_logprobs_are_not_cached(setting):
    assert not eligible(chat(("user", "hi"), **setting), NONE)


def test_off_wins_over_greedy_and_opt_in():
    assert not eligible(chat(("user", "hi")).model_copy(update={"cache": CacheMode.OFF}), NONE)
    assert not eligible(chat(("user", "hi")), TenantPolicy(opt_in=frozenset({"t1"}), off=frozenset({"t1"})))


def test_other_modalities_are_not_served():
    speech = parse_request({"modality": "speech", "params": {"input": "hi"}})
    image = parse_request({"modality": "image", "params": {"prompt": "a cat", "seed": 1}})
    assert not eligible(speech, TenantPolicy(opt_in=frozenset({"default"})))
    assert not eligible(image, TenantPolicy(opt_in=frozenset({"default"})))


# --- scope ---------------------------------------------------------------------------------------

def test_scope_ignores_the_embedded_turn_and_labels():
    a = chat(("system", "be brief"), ("user", "What is the capital of France?"))
    b = chat(("system", "be brief"), ("user", "Which city is France's capital?"))
    labelled = b.model_copy(update={"user": "u9", "session": "s", "metadata": {"x": "y"}, "priority": 1})
    assert scope_of(a, "e") == scope_of(b, "e") == scope_of(labelled, "e")


@pytest.mark.parametrize("change", [
    {"tenant": "t2"},
    {"model": "other"},
    {"system": "be verbose"},
    {"max_tokens": 16},
    {"stop": ["\n"]},
])
def test_scope_changes_with_what_changes_the_answer(change):
    base = chat(("system", "be brief"), ("user", "q"))
    system = change.pop("system", "be brief")
    tenant = change.pop("tenant", "t1")
    other = chat(("system", system), ("user", "q"), tenant=tenant, **{k: v for k, v in change.items() if k != "model"})
    if "model" in change:
        other = other.model_copy(update={"model": change["model"]})
    assert scope_of(base, "e") != scope_of(other, "e")


def test_a_raw_prompt_and_a_chat_of_the_same_words_have_their_own_scopes():
    as_chat = chat(("user", "Once upon a time"))
    raw = chat(("user", "Once upon a time"), raw=True)
    assert scope_of(as_chat, "e") != scope_of(raw, "e")
    assert scope_of(as_chat, "e") == scope_of(chat(("user", "Once upon a time"), raw=False), "e")  # chats keep keys


def test_scope_changes_with_earlier_turns_and_embedding_model():
    one = chat(("user", "hi"), ("assistant", "hello"), ("user", "q"))
    two = chat(("user", "hey"), ("assistant", "hello"), ("user", "q"))
    assert scope_of(one, "e") != scope_of(two, "e")
    assert scope_of(one, "e") != scope_of(one, "f")


def test_sampling_settings_scope_only_sampled_requests():
    assert scope_of(chat(("user", "q"), seed=1), "e") == scope_of(chat(("user", "q"), seed=2), "e")
    hot1 = chat(("user", "q"), temperature=0.7, seed=1)
    hot2 = chat(("user", "q"), temperature=0.7, seed=2)
    assert scope_of(hot1, "e") != scope_of(hot2, "e")


# --- matching ------------------------------------------------------------------------------------

def test_best_respects_the_threshold():
    rows = np.stack([unit(1, 0, 0), unit(0, 1, 0)])
    assert best(rows, unit(1, 0.1, 0), 0.9)[0] == 0
    assert best(rows, unit(1, 1, 0), 0.9) is None
    assert best(np.zeros((0, 3), np.float32), unit(1, 0, 0), 0.0) is None


def test_local_tier_hits_only_in_scope_and_above_threshold():
    tier = LocalTier(max_entries=10, max_bytes=1 << 20, ttl_s=60)
    tier.put("s1", unit(1, 0, 0), answer("j1"), 1000.0)
    assert tier.lookup("s1", unit(1, 0.05, 0), 0.9, 1001.0).answer.job_id == "j1"
    assert tier.lookup("s2", unit(1, 0, 0), 0.9, 1001.0) is None
    assert tier.lookup("s1", unit(0, 1, 0), 0.9, 1001.0) is None


def test_local_tier_expires_entries_after_the_ttl():
    tier = LocalTier(max_entries=10, max_bytes=1 << 20, ttl_s=60)
    tier.put("s", unit(1, 0), answer("j1", made=1000.0), 1000.0)
    assert tier.lookup("s", unit(1, 0), 0.9, 1059.0) is not None
    assert tier.lookup("s", unit(1, 0), 0.9, 1061.0) is None
    assert len(tier) == 0 and tier.nbytes == 0


def test_local_tier_evicts_least_recently_used_by_entries():
    tier = LocalTier(max_entries=2, max_bytes=1 << 20, ttl_s=60)
    tier.put("s", unit(1, 0, 0), answer("a"), 1000.0)
    tier.put("s", unit(0, 1, 0), answer("b"), 1000.0)
    assert tier.lookup("s", unit(1, 0, 0), 0.9, 1000.0).answer.job_id == "a"  # a is now the newest use
    tier.put("s", unit(0, 0, 1), answer("c"), 1000.0)
    assert len(tier) == 2
    assert tier.lookup("s", unit(0, 1, 0), 0.9, 1000.0) is None  # b went
    assert tier.lookup("s", unit(1, 0, 0), 0.9, 1000.0) is not None


def test_local_tier_evicts_by_bytes_and_refuses_an_entry_larger_than_the_bound():
    big = answer("a", text="x" * 4000)
    tier = LocalTier(max_entries=100, max_bytes=2 * big.nbytes + 10, ttl_s=60)
    for i in range(3):
        tier.put(f"s{i}", unit(1, 0), answer(f"j{i}", text="x" * 4000), 1000.0)
    assert len(tier) == 2 and tier.nbytes <= tier.max_bytes
    assert tier.lookup("s0", unit(1, 0), 0.9, 1000.0) is None
    tier.put("huge", unit(1, 0), answer("h", text="y" * 20000), 1000.0)
    assert tier.lookup("huge", unit(1, 0), 0.9, 1000.0) is None and len(tier) == 2


def test_putting_the_same_job_again_replaces_it():
    tier = LocalTier(max_entries=10, max_bytes=1 << 20, ttl_s=60)
    tier.put("s", unit(1, 0), answer("a", text="old"), 1000.0)
    tier.put("s", unit(1, 0), answer("a", text="new"), 1000.0)
    assert len(tier) == 1 and tier.lookup("s", unit(1, 0), 0.9, 1000.0).answer.text == "new"


# --- a hit's events ------------------------------------------------------------------------------

def test_hit_events_look_like_a_generated_answer_marked_as_a_hit():
    request = chat(("user", "q"))
    events = hit_events(request, Hit(answer("src", text="Paris."), 0.97), now=request.submitted_at + 0.01)
    assert [e.type for e in events] == [EventType.STARTED, EventType.TOKEN, EventType.COMPLETED]
    assert [e.seq for e in events] == [FIRST_SEQ, FIRST_SEQ + 1, FIRST_SEQ + 2]
    started, token, completed = events
    assert started.cache.source_job == "src" and started.cache.similarity == pytest.approx(0.97)
    assert token.text == "Paris." and completed.text == "Paris." and completed.cache.status == "hit"
    assert completed.usage.completion_tokens == 0 and completed.usage.total_tokens == 0
    assert all(e.job_id == request.job_id for e in events)


def test_answer_and_miss_round_trip_through_json():
    a = answer("j", text="héllo ✓")
    assert Answer.from_json(a.to_json()) == a and a.source_job == "j"  # stored before ids were scoped
    scoped = Answer("j0123", "x", FinishReason.STOP, MODEL, 1.0, client_job_id="mine")
    assert Answer.from_json(scoped.to_json()) == scoped and scoped.source_job == "mine"
    miss = Miss("scope", unit(3, 4), "mine")
    back = Miss.from_json(miss.to_json())
    assert back.scope == "scope" and np.allclose(back.vector, miss.vector, atol=1e-3)
    assert back.client_job_id == "mine"


# --- key terms -----------------------------------------------------------------------------------

@pytest.mark.parametrize("a,b", [
    ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?"),
    ("What is the capital of Austria?", "What is the capital of Australia?"),
    ("What is 12 times 12?", "What is 12 times 13?"),
    ("How do I convert Celsius to Fahrenheit?", "How do I convert Fahrenheit to Celsius?"),
    ("What foods are high in iron?", "What foods are low in iron?"),
    ("Who was the first person on the moon?", "Who was the second person on the moon?"),
    ("Translate 'good morning' into Italian.", "Translate 'good night' into Italian."),
    ("Should I take it with food?", "Shouldn't I take it with food?"),
])
def test_key_terms_tell_near_misses_apart(a, b):
    assert key_terms(a) != key_terms(b)
    assert scope_of(chat(("user", a)), "e") != scope_of(chat(("user", b)), "e")


@pytest.mark.parametrize("a,b", [
    ("What is the capital of France?", "Which city is France's capital?"),
    ("What is the largest planet?", "Which planet is the biggest?"),
    ("How do I reverse a list in Python?", "What's the way to reverse a Python list?"),
    ("Translate 'good morning' into Spanish.", "How do you say 'good morning' in Spanish?"),
])
def test_key_terms_of_paraphrases_match(a, b):
    assert key_terms(a) == key_terms(b)


def test_key_terms_skip_sentence_starts_and_handle_any_script():
    assert key_terms("Please help. Where is Lisbon?") == ["lisbon"]
    assert key_terms("東京の人口は？ 2020") == ["2020"]
    assert key_terms("") == []


@pytest.mark.parametrize("text", ["🙂" * 1000, "x" * 131_072, "\x00\x01'\"“", "'" * 500, "Ünïcødé Ñame here"])
def test_key_terms_and_scope_take_any_text(text):
    terms = key_terms(text)
    assert isinstance(terms, list)
    assert len(scope_of(chat(("user", text)), "e")) == 64
