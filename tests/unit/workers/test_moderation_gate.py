import pytest

from infra.settings.moderation import ModerationSettings
from schemas import EventSource, FinishReason
from schemas.events import Completed, Progress, TokenDelta, Usage
from workers.moderation.build import build_gate
from workers.moderation.gate import ModerationGate
from workers.moderation.policy import BlocklistClassifier, ProfanityClassifier


def tok(seq, text, job="j"):
    return TokenDelta(job_id=job, seq=seq, attempt=1, source=EventSource.WORKER, text=text, tokens=1)


def done(seq, job="j"):
    return Completed(job_id=job, seq=seq, attempt=1, source=EventSource.WORKER, usage=Usage())


def test_without_classifier_everything_passes_at_once():
    gate = ModerationGate(None)
    event = tok(0, "hi")
    assert gate.on_event(event).publish == [event]


def test_tokens_are_held_until_the_window_is_checked():
    gate = ModerationGate(BlocklistClassifier(["darn"]), window_chars=10)
    assert gate.on_event(tok(0, "hello ")).publish == []
    released = gate.on_event(tok(1, "world!")).publish
    assert [e.text for e in released] == ["hello ", "world!"]
    end = gate.on_event(done(2)).publish
    assert [e.type for e in end] == ["completed"]


def test_blocked_window_ends_job_with_content_filter_and_drops_the_rest():
    gate = ModerationGate(BlocklistClassifier(["darn"]), window_chars=8)
    assert gate.on_event(tok(0, "oh da")).publish == []
    out = gate.on_event(tok(1, "rn it all"))
    types = [e.type for e in out.publish]
    assert types == ["moderation", "completed"]
    assert out.publish[1].finish_reason is FinishReason.CONTENT_FILTER
    assert out.publish[1].source is EventSource.MODERATION
    assert out.cancel == ["j"]
    assert gate.on_event(tok(2, "more")).publish == []
    assert gate.on_event(done(3)).publish == []


def test_term_split_across_windows_is_caught():
    gate = ModerationGate(BlocklistClassifier(["secret"]), window_chars=4)
    assert [e.text for e in gate.on_event(tok(0, "a sec")).publish] == ["a sec"]
    out = gate.on_event(tok(1, "ret!"))
    assert [e.type for e in out.publish] == ["moderation", "completed"]


def test_short_output_is_checked_at_the_terminal_event():
    gate = ModerationGate(BlocklistClassifier(["bad"]), window_chars=100)
    gate.on_event(tok(0, "so bad"))
    out = gate.on_event(done(1))
    assert [e.type for e in out.publish] == ["moderation", "completed"]
    assert out.publish[-1].finish_reason is FinishReason.CONTENT_FILTER


def test_other_events_pass_unchanged():
    gate = ModerationGate(BlocklistClassifier(["bad"]))
    p = Progress(job_id="x", seq=0, source=EventSource.WORKER, step=1, total=2)
    assert gate.on_event(p).publish == [p]


@pytest.mark.slow
def test_profanity_model_blocks_abuse_and_passes_ordinary_text():
    classifier = ProfanityClassifier(threshold=0.8)
    assert classifier.classify("What a lovely day for a walk by the sea.").allowed
    verdict = classifier.classify("fuck you, you stupid idiot")
    assert not verdict.allowed and verdict.categories == ["profanity"] and verdict.score >= 0.8


@pytest.mark.slow
def test_settings_choose_the_classifier():
    assert build_gate(ModerationSettings()).classifier is None
    assert isinstance(build_gate(ModerationSettings(classifier="profanity")).classifier, ProfanityClassifier)
    gate = build_gate(ModerationSettings(blocklist="darn, heck"))
    assert not gate.classifier.classify("oh heck").allowed
