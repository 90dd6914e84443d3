"""The real analyzer (presidio + the spaCy model from its wheel) on real and hostile input."""

from __future__ import annotations

import pytest

from schemas import parse_request
from streams.privacy.engine import PiiAnalyzer
from streams.privacy.logic import prompt_texts, redact_batch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def analyzer():
    return PiiAnalyzer()


def test_presidio_and_our_recognizers_together(analyzer):
    [spans] = analyzer.analyze(["Call John Smith at +1 415 555 0123 or john@example.com, IBAN DE89 3704 0044 0532 0130 00"])
    assert [s.entity.value for s in spans] == ["PERSON", "PHONE", "EMAIL", "IBAN"]


def test_dishes_and_diets_are_not_taken_for_people_while_people_still_are(analyzer):
    texts = ["My favourite food is Beef Wellington.", "Honestly Pad Thai is my favourite food.", "I am Keto.",
             "I had lunch with Margaret Thornbury."]
    found = [[t[s.start:s.end] for s in spans] for t, spans in zip(texts, analyzer.analyze(texts))]
    assert found == [[], [], [], ["Margaret Thornbury"]]


@pytest.mark.parametrize("text", [
    "", "   ", "日本語のテキストです。田中さんに連絡してください。", "مرحبا بك في المدينة", "🎉🔥👩‍👩‍👧‍👦" * 200,
    "\x00\x01\x02 junk \ufffd\ufeff", "lone surrogate \ud800 here", "a" * 120_000, "<PERSON_1> already a placeholder",
    "Ω≈ç√∫˜µ≤≥÷ " * 500 + " mail me at ada@example.org",
])
def test_hostile_text_is_analysed_without_error(analyzer, text):
    [spans] = analyzer.analyze([text])
    assert all(0 <= s.start < s.end <= len(text) for s in spans)
    if "ada@example.org" in text:
        assert any(text[s.start:s.end] == "ada@example.org" for s in spans)


def test_a_long_chat_of_many_messages_is_redacted_in_one_call(analyzer):
    messages = [{"role": "user" if i % 2 else "assistant", "content": f"message {i} from Margaret Thornbury"}
                for i in range(200)]
    chat = parse_request({"modality": "text", "params": {"messages": messages}})
    [out] = redact_batch([chat], analyzer.analyze)
    assert all(t.endswith("<PERSON_1>") for t in prompt_texts(out.request))


def test_a_field_longer_than_the_ner_limit_is_searched_by_our_recognizers_only():
    capped = PiiAnalyzer(ner_max_chars=80)
    text = "Yesterday I had lunch with Dmitriy Okafor, card 4111 1111 1111 1111."
    assert [s.entity.value for s in capped.analyze([text])[0]] == ["PERSON", "CARD"]  # spaCy found the name
    long = text + " and more" * 20
    assert [s.entity.value for s in capped.analyze([long])[0]] == ["CARD"]


def test_spacy_is_spared_only_where_it_could_add_no_name(analyzer, monkeypatch):
    """Texts without a name cue skip the entity recognizer, yet every pattern type is still found."""
    seen: list[str] = []
    nlp = analyzer._engine.nlp_engine
    real = nlp.process_batch

    def spy(texts, **kwargs):
        seen.extend(texts)
        return real(texts, **kwargs)

    monkeypatch.setattr(nlp, "process_batch", spy)
    texts = ["Name a colour. Say hello to the team.",
             "Please write to ada.l@example.org or call +44 20 7946 0958, card 4111 1111 1111 1111.",
             "What did Margaret Thornbury say?",
             "Ask 田中 about it."]
    spans = analyzer.analyze(texts)
    assert seen == texts[2:]
    assert spans[0] == []
    assert [s.entity.value for s in spans[1]] == ["EMAIL", "PHONE", "CARD"]
    assert [s.entity.value for s in spans[2]] == ["PERSON"]
