"""Placeholders: consistent per job, restored whole and across token deltas."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schemas import parse_request
from schemas.redaction import SPOKEN, Entity, StreamRestorer, restore
from streams.privacy.logic import JobRedaction, prompt_texts, redact_batch
from streams.privacy.recognizers import find_all, resolve


def analyze(texts):
    return [resolve(find_all(t)) for t in texts]


def test_same_value_same_placeholder_across_fields_and_numbered_per_type():
    job = JobRedaction()
    assert job.replacement(Entity.EMAIL, "a@x.io") == "<EMAIL_1>"
    assert job.replacement(Entity.EMAIL, "b@x.io") == "<EMAIL_2>"
    assert job.replacement(Entity.EMAIL, "a@x.io") == "<EMAIL_1>"
    assert job.replacement(Entity.PHONE, "+1 415 555 0123") == "<PHONE_1>"
    assert job.mapping == {"<EMAIL_1>": "a@x.io", "<EMAIL_2>": "b@x.io", "<PHONE_1>": "+1 415 555 0123"}
    assert dict(job.counts) == {"EMAIL": 3, "PHONE": 1}


def test_every_prompt_field_of_every_modality_is_redacted():
    card = "4111 1111 1111 1111"
    chat = parse_request({"modality": "text", "params": {"messages": [
        {"role": "system", "content": f"card {card}"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": f"your card {card}"}]}})
    image = parse_request({"modality": "image", "params": {"prompt": f"a poster of {card}",
                                                          "negative_prompt": f"not {card}"}})
    video = parse_request({"modality": "video", "params": {"prompt": f"a sign reading {card}"}})
    speech = parse_request({"modality": "speech", "params": {"input": f"my card is {card}"}})
    out = redact_batch([chat, image, video, speech], analyze)
    texts = [t for r in out for t in prompt_texts(r.request)]
    assert not any(card in t for t in texts)
    assert texts[:3] == ["card <CARD_1>", "hi", "your card <CARD_1>"]
    assert texts[3:5] == ["a poster of <CARD_1>", "not <CARD_1>"]
    assert out[3].request.params.input == f"my card is {SPOKEN[Entity.CARD]}" and out[3].redaction.mapping == {}
    assert out[0].request.job_id == chat.job_id and out[0].changed


def test_a_request_without_personal_data_is_returned_unchanged():
    chat = parse_request({"modality": "text", "params": {"messages": [{"role": "user", "content": "hello 🎉 мир"}]}})
    [out] = redact_batch([chat], analyze)
    assert out.request is chat and not out.changed


def test_restore_replaces_known_placeholders_only():
    mapping = {"<PERSON_1>": "Ada", "<EMAIL_1>": "ada@x.io"}
    assert restore("Hi <PERSON_1>, mail <EMAIL_1> or <PERSON_2>", mapping) == "Hi Ada, mail ada@x.io or <PERSON_2>"


def test_stream_restorer_holds_a_split_placeholder_until_it_completes():
    r = StreamRestorer({"<PERSON_1>": "Ada Lovelace"})
    assert r.feed("Dear <PER") == "Dear "
    assert r.feed("SON_") == ""
    assert r.feed("1>, hello") == "Ada Lovelace, hello"
    assert r.feed(" a < b") == " a < b"  # cannot become a placeholder: released at once
    assert r.feed(" <EMAIL") == " "
    assert r.flush() == "<EMAIL"


@given(st.lists(st.integers(min_value=0, max_value=40), max_size=6),
       st.text(alphabet="ab <>_PERSON1EMAIL", max_size=40))
def test_stream_restorer_equals_whole_restore_for_any_split(cuts, noise):
    mapping = {"<PERSON_1>": "Ada", "<EMAIL_1>": "ada@x.io"}
    text = f"x <PERSON_1> {noise} <EMAIL_1><PERSON_1> y"
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    r = StreamRestorer(mapping)
    pieces = [r.feed(text[a:b]) for a, b in zip(bounds, bounds[1:])]
    assert "".join(pieces) + r.flush() == restore(text, mapping)


def test_metadata_label_values_are_redacted_with_the_jobs_placeholders():
    card = "4111 1111 1111 1111"
    chat = parse_request({"modality": "text", "metadata": {"order": "ord-7", "payer": f"card {card}"},
                          "params": {"messages": [{"role": "user", "content": f"refund {card}"}]}})
    [out] = redact_batch([chat], analyze)
    assert out.request.metadata == {"order": "ord-7", "payer": "card <CARD_1>"}
    assert out.request.params.messages[0].content == "refund <CARD_1>"
    assert card not in out.request.model_dump_json()


def test_a_name_found_once_is_redacted_wherever_it_appears_in_the_job():
    chat = parse_request({"modality": "text", "params": {"messages": [
        {"role": "system", "content": "The user is Margaret Thornbury."},
        {"role": "user", "content": "Write a note signed Thornbury, for Margaret Thornbury's file."}]}})
    [out] = redact_batch([chat], analyze)
    texts = prompt_texts(out.request)
    assert "Thornbury" not in " ".join(texts)
    assert texts[0] == "The user is <PERSON_1>." and "<PERSON_1>'s file" in texts[1]
    assert out.redaction.mapping == {"<PERSON_1>": "Margaret Thornbury", "<PERSON_2>": "Thornbury"}


def test_the_analyzer_remembers_clean_texts_by_digest_and_still_finds_new_values():
    from streams.privacy.engine import PiiAnalyzer

    analyzer = PiiAnalyzer(presidio=False)
    assert analyzer.analyze(["You are a helpful assistant.", "card 4111 1111 1111 1111", ""])[1]
    assert len(analyzer._clean) == 1 and all(isinstance(k, bytes) for k in analyzer._clean)
    again = analyzer.analyze(["You are a helpful assistant.", "card 4111 1111 1111 1111"])
    assert again[0] == [] and [s.entity.value for s in again[1]] == ["CARD"]


def test_a_chat_message_author_name_is_redacted_like_the_text():
    chat = parse_request({"modality": "text", "params": {"messages": [
        {"role": "user", "name": "Margaret Thornbury", "content": "hello"},
        {"role": "user", "content": "I am Margaret Thornbury"}]}})
    [out] = redact_batch([chat], analyze)
    messages = out.request.params.messages
    assert [m.name for m in messages] == ["<PERSON_1>", None]
    assert messages[1].content == "I am <PERSON_1>" and messages[0].content == "hello"


async def test_a_prompt_pushed_over_its_limit_by_placeholders_fails_saying_which_field_and_what_to_do():
    from infra.settings.streams import PrivacySettings
    from schemas.enums import ErrorCode
    from streams.privacy.engine import PiiAnalyzer
    from streams.privacy.stage import PrivacyStage
    from streams.stages import Item

    full = " ".join(f"a{i}@b.co" for i in range(560))[:4000]  # at the limit as sent; longer once redacted
    over = Item(parse_request({"modality": "image", "params": {"prompt": full}}), b"k")
    label = Item(parse_request({"modality": "image", "params": {"prompt": "waves"},
                                "metadata": {"owner": "x" * 505 + " a@b.co"}}), b"k")
    fits = Item(parse_request({"modality": "image", "params": {"prompt": "waves, mail a@b.co"}}), b"k")
    await PrivacyStage(PiiAnalyzer(presidio=False), None, PrivacySettings()).run([over, label, fits])
    assert over.end.code == label.end.code == ErrorCode.REDACTION_FAILED and fits.pending
    assert over.end.message.startswith("params.prompt is longer than its limit of 4000 characters")
    assert label.end.message.startswith("metadata.owner is longer than its limit of 512 characters")
    assert "a@b.co" not in over.end.message + label.end.message and "shorten it" in over.end.message


def _recording_stage():
    """A privacy stage over an analyzer (our recognizers only) that notes the thread each analysis ran on."""
    import threading

    from infra.settings.streams import PrivacySettings
    from streams.privacy.engine import PiiAnalyzer
    from streams.privacy.stage import PrivacyStage

    class Recording(PiiAnalyzer):
        threads: list[str] = []

        def analyze(self, texts, *, wait=True):
            self.threads.append(threading.current_thread().name)
            return super().analyze(texts, wait=wait)

    analyzer = Recording(presidio=False)
    return analyzer, PrivacyStage(analyzer, None, PrivacySettings())


def _chat_item(text: str):
    from streams.stages import Item

    return Item(parse_request({"modality": "text", "params": {"messages": [{"role": "user", "content": text}]}}), b"k")


async def test_short_turns_without_name_digits_or_at_are_redacted_without_a_thread_hand_off():
    import threading

    analyzer, stage = _recording_stage()
    short, named = _chat_item("Say hello."), _chat_item("Say hello to Margaret Thornbury.")
    await stage.run([short])
    await stage.run([named])
    assert analyzer.threads == [threading.current_thread().name, analyzer.threads[1]]
    assert analyzer.threads[1] != threading.current_thread().name
    assert named.request.params.messages[0].content == "Say hello to <PERSON_1>."
    assert not analyzer.cheap(["a" * 2_001]) and not analyzer.cheap(["mail a@b.co"]) and analyzer.cheap(["ok", "fine"])


async def test_a_short_turn_goes_to_a_thread_while_another_thread_holds_the_analyzer():
    """The memory writer analyses its batches in a thread of its own: the loop never waits for one."""
    import asyncio
    import threading

    analyzer, stage = _recording_stage()
    short = _chat_item("Say hi.")
    with analyzer._lock:  # held by another thread's analysis
        task = asyncio.ensure_future(stage.run([short]))
        await asyncio.sleep(0.05)  # the loop runs meanwhile: the stage handed the batch to a thread, which waits
        assert not task.done() and len(analyzer.threads) == 2 and analyzer.threads[0] == threading.current_thread().name
    await task
    assert analyzer.threads[1] != threading.current_thread().name and short.request.params.messages[0].content == "Say hi."


def test_a_text_known_clean_is_cheap_however_it_looks():
    from streams.privacy.engine import PiiAnalyzer

    analyzer = PiiAnalyzer(presidio=False)
    question = "What is the capital city of France?"  # a capital inside the sentence: spaCy would read it
    assert not analyzer.cheap([question])
    assert analyzer.analyze([question]) == [[]]
    assert analyzer.cheap([question]) and not analyzer.cheap([question, "And of Spain?"])
