import pytest

from infra.moderation.moderator import Moderator, blocklist_moderator
from infra.moderation.policy import Policy, PolicyBook
from infra.moderation.text import BlocklistClassifier
from infra.settings.moderation import ModerationSettings
from schemas import EventSource, FinishReason
from schemas.events import Completed, ModelInfo, Progress, Started, TokenDelta, Usage
from workers.moderation.build import build_gate
from workers.moderation.gate import ModerationGate


def tok(seq, text, job="j", tokens=1):
    return TokenDelta(job_id=job, seq=seq, attempt=1, source=EventSource.WORKER, text=text, tokens=tokens)


def done(seq, job="j", text=None):
    return Completed(job_id=job, seq=seq, attempt=1, source=EventSource.WORKER, usage=Usage(), text=text)


def test_without_a_moderator_everything_passes_at_once():
    gate = ModerationGate(None)
    event = tok(0, "hi")
    assert gate.on_event(event).publish == [event]


def test_tokens_are_held_until_the_window_is_checked():
    gate = ModerationGate(blocklist_moderator(["darn"]), window_chars=10)
    assert gate.on_event(tok(0, "hello ")).publish == []
    assert gate.held() == 1
    released = gate.on_event(tok(1, "world and")).publish
    assert [e.text for e in released] == ["hello ", "world and"]
    end = gate.on_event(done(2)).publish
    assert [e.type for e in end] == ["completed"]


def test_a_sentence_end_closes_the_window_early():
    gate = ModerationGate(blocklist_moderator(["darn"]), window_chars=1000, window_tokens=1000)
    assert gate.on_event(tok(0, "Hi")).publish == []
    assert [e.text for e in gate.on_event(tok(1, " there.")).publish] == ["Hi", " there."]


def test_the_token_count_bounds_the_hold_back():
    gate = ModerationGate(blocklist_moderator(["darn"]), window_chars=1000, window_tokens=4)
    assert gate.on_event(tok(0, "a", tokens=3)).publish == []
    assert len(gate.on_event(tok(1, "b", tokens=1)).publish) == 2
    assert gate.held() == 0


def test_blocked_window_ends_job_with_content_filter_and_drops_the_rest():
    gate = ModerationGate(blocklist_moderator(["darn"]), window_chars=8)
    assert gate.on_event(tok(0, "oh da")).publish == []
    out = gate.on_event(tok(1, "rn it all"))
    types = [e.type for e in out.publish]
    assert types == ["moderation", "completed"]
    assert out.publish[0].categories == ["blocklist"] and out.publish[0].reason
    assert out.publish[1].finish_reason is FinishReason.CONTENT_FILTER
    assert out.publish[1].source is EventSource.MODERATION
    assert out.cancel == ["j"]
    assert gate.on_event(tok(2, "more")).publish == []
    assert gate.on_event(done(3)).publish == []


def test_term_split_across_windows_is_caught():
    gate = ModerationGate(blocklist_moderator(["secret"]), window_chars=4)
    assert [e.text for e in gate.on_event(tok(0, "a sec")).publish] == ["a sec"]
    out = gate.on_event(tok(1, "ret!"))
    assert [e.type for e in out.publish] == ["moderation", "completed"]


def test_short_output_is_checked_at_the_terminal_event():
    gate = ModerationGate(blocklist_moderator(["bad"]), window_chars=100)
    gate.on_event(tok(0, "so bad"))
    out = gate.on_event(done(1))
    assert [e.type for e in out.publish] == ["moderation", "completed"]
    assert out.publish[-1].finish_reason is FinishReason.CONTENT_FILTER


def test_output_without_tokens_is_checked_whole():
    gate = ModerationGate(blocklist_moderator(["bad"]))
    out = gate.on_event(done(0, text="a bad answer"))
    assert [e.type for e in out.publish] == ["moderation", "completed"]


def test_other_events_pass_unchanged():
    gate = ModerationGate(blocklist_moderator(["bad"]))
    p = Progress(job_id="x", seq=0, source=EventSource.WORKER, step=1, total=2)
    assert gate.on_event(p).publish == [p]


class _Broken:
    name = "broken"

    def scores(self, texts):
        raise RuntimeError("model gone")


def test_a_failing_classifier_withholds_by_default_and_says_why():
    gate = ModerationGate(Moderator(_Broken()), window_chars=4)
    out = gate.on_event(tok(0, "hello"))
    assert [e.type for e in out.publish] == ["moderation", "completed"]
    assert "fails closed" in out.publish[0].reason and out.publish[1].finish_reason is FinishReason.CONTENT_FILTER


def test_a_failing_classifier_releases_when_the_policy_fails_open():
    gate = ModerationGate(Moderator(_Broken(), PolicyBook(Policy.build(fail_open=True))), window_chars=4)
    out = gate.on_event(tok(0, "hello"))
    assert [e.type for e in out.publish] == ["moderation", "token"]
    assert out.publish[0].allowed and "fails open" in out.publish[0].reason


@pytest.mark.slow
def test_the_default_gate_blocks_a_threat_and_passes_ordinary_text():
    gate = build_gate(ModerationSettings())
    assert [e.type for e in gate.on_event(tok(0, "What a lovely day for a walk by the sea.")).publish] == ["token"]
    out = gate.on_event(tok(1, "I will k1ll you tomorrow.", job="k"))
    assert [e.type for e in out.publish] == ["moderation", "completed"]
    assert "harassment/threatening" in out.publish[0].categories


@pytest.mark.slow
def test_settings_choose_the_classifier():
    assert build_gate(ModerationSettings(classifier="none")).moderator is None
    assert build_gate(ModerationSettings()).moderator.name.startswith("genloom-lexicon")
    gate = build_gate(ModerationSettings(classifier="none", blocklist="darn, heck"))
    assert not gate.moderator.check([(None, "oh h3ck")])[0].allowed


def test_the_first_window_is_short_so_the_first_token_goes_out_after_one_check():
    gate = ModerationGate(blocklist_moderator(["darn"]), window_chars=1000, window_tokens=8, first_window_tokens=1)
    assert [e.text for e in gate.on_event(tok(0, "Once")).publish] == ["Once"]
    assert gate.on_event(tok(1, " upon")).publish == []  # later windows hold up to 8 tokens
    assert gate.held() == 1


def test_output_is_checked_under_the_tenant_policy_its_started_event_names():

    book = PolicyBook(Policy.build(block=["gore"]), {"horror": Policy.build()})
    gate = ModerationGate(Moderator(BlocklistClassifier([]), book), window_chars=4)

    def started(job, tenant):
        return Started(job_id=job, seq=0, attempt=1, source=EventSource.WORKER, worker="w", tenant=tenant,
                       model=ModelInfo(id="m", device="cpu", dtype="float32"))

    gate.on_event(started("h", "horror"))
    gate.on_event(started("k", "kids"))
    assert [e.type for e in gate.on_event(tok(1, "gore!", job="h")).publish] == ["token"]
    assert [e.type for e in gate.on_event(tok(1, "gore!", job="k")).publish] == ["moderation", "completed"]


def test_a_blocked_artifact_drops_the_jobs_held_text_and_settles_its_positions():
    from infra.moderation.policy import Decision
    from schemas.events import Artifact

    gate = ModerationGate(blocklist_moderator(["darn"]), window_chars=1000, window_tokens=100)
    assert gate.on_event(tok(0, "a caption", job="j"), position=("p", 0)).settled == []  # held
    artifact = Artifact(job_id="j", seq=1, attempt=1, source=EventSource.WORKER, uri="file:///x/artifacts/t/j/0.png",
                        mime_type="image/png", bytes=1, sha256="0" * 64)
    out = gate.on_artifact(artifact, Decision(False, ["sexual"], {"sexual": 0.9}), position=("p", 1))
    assert sorted(out.settled) == [("p", 0), ("p", 1)] and out.delete == [artifact.uri]
    assert [e.type for e in out.publish] == ["moderation", "completed"] and gate.held() == 0


def test_a_window_of_a_job_gone_quiet_is_checked_and_released_so_commits_go_on():
    now = [0.0]
    gate = ModerationGate(blocklist_moderator(["darn"]), window_chars=1000, window_tokens=100, idle_s=60,
                          clock=lambda: now[0])
    gate.on_event(tok(0, "half a sent", job="dead"), position=("p", 0))
    gate.on_event(tok(0, "oh darn", job="bad"), position=("p", 1))
    assert gate.expire().publish == []  # not idle yet
    now[0] = 61.0
    out = gate.expire()
    assert [(e.job_id, e.type) for e in out.publish] == [("dead", "token"), ("bad", "moderation"), ("bad", "completed")]
    assert sorted(out.settled) == [("p", 0), ("p", 1)] and gate.held() == 0


def checked_gate(terms=("darn",), **kwargs):
    return ModerationGate(blocklist_moderator(list(terms)), mode="checked", window_chars=1000, **kwargs)


def test_checked_mode_releases_each_token_as_soon_as_its_sentence_so_far_passes():
    gate = checked_gate()
    for seq, text in enumerate(["Hello", " there", ",", " friend", "."]):
        assert [e.text for e in gate.on_event(tok(seq, text)).publish] == [text]
    assert gate.held() == 0


def test_checked_mode_holds_a_token_while_it_could_grow_into_a_blocked_term():
    gate = checked_gate()
    assert [e.text for e in gate.on_event(tok(0, "Look")).publish] == ["Look"]
    assert gate.on_event(tok(1, " da")).publish == []  # "da" may become "darn"
    assert gate.held() == 1
    assert [e.text for e in gate.on_event(tok(2, "ys")).publish] == [" da", "ys"]  # "days": both pass


def test_checked_mode_holds_spelled_out_letters_and_blocks_the_term_they_spell():
    gate = checked_gate(hold_tokens=8)
    assert [e.text for e in gate.on_event(tok(0, "well")).publish] == ["well"]
    for seq, text in enumerate([" d", " a", " r"], start=1):
        assert gate.on_event(tok(seq, text)).publish == []
    out = gate.on_event(tok(4, " n"))
    assert [e.type for e in out.publish] == ["moderation", "completed"]
    assert out.publish[1].finish_reason is FinishReason.CONTENT_FILTER and out.cancel == ["j"]
    assert gate.on_event(tok(5, " it")).publish == []


def test_checked_mode_bounds_the_hold_then_checks():
    gate = checked_gate(terms=("abcdefghij",), hold_tokens=2)
    assert gate.on_event(tok(0, "ab")).publish == []
    assert [e.text for e in gate.on_event(tok(1, "cd")).publish] == ["ab", "cd"]  # two held: checked, passes


def test_checked_mode_blocks_a_sentence_whose_last_token_makes_it_fail_and_keeps_what_was_released():
    gate = checked_gate(terms=("go away now",))
    released = []
    for seq, text in enumerate(["Please", " go"]):
        released += [e.text for e in gate.on_event(tok(seq, text)).publish]
    assert gate.on_event(tok(2, " away")).publish == []  # "go away" may become the term
    out = gate.on_event(tok(3, " now."))
    assert released == ["Please", " go"]  # " go" alone is an everyday word: released
    assert [e.type for e in out.publish] == ["moderation", "completed"]
    assert out.publish[1].finish_reason is FinishReason.CONTENT_FILTER


def test_checked_mode_checks_in_context_of_the_sentence_so_far():
    seen = []

    class Recording(BlocklistClassifier):
        def scores(self, texts):
            seen.extend(texts)
            return super().scores(texts)

    gate = ModerationGate(Moderator(Recording([]), PolicyBook(Policy.build(block=["darn"]))), mode="checked")
    for seq, text in enumerate(["One.", " Two", " three"]):
        gate.on_event(tok(seq, text))
    assert seen[-1] == "One. Two three"  # the sentence so far, after the released tail before it


def test_checked_mode_settles_a_token_only_when_it_is_released():
    gate = checked_gate()
    out = gate.on_event(tok(0, " da"), position=("p", 0))
    assert out.settled == [] and gate.held() == 1
    out = gate.on_event(tok(1, "wn"), position=("p", 1))
    assert out.settled == [("p", 0), ("p", 1)]


def test_a_tenant_policy_chooses_its_window_mode():
    settings = ModerationSettings(classifier="blocklist", blocklist="darn", window_mode="checked",
                                  tenant_policies='{"acme": {"window_mode": "windowed"}}')
    book = settings.policies()
    assert book.default.stream == "checked" and book.of("acme").stream == "windowed"
    with pytest.raises(ValueError, match="window_mode"):
        ModerationSettings(tenant_policies='{"acme": {"window_mode": "sometimes"}}')
    gate = ModerationGate(Moderator(BlocklistClassifier([]), book), window_chars=1000, window_tokens=100)
    assert [e.text for e in gate.on_event(tok(0, "hello", job="a")).publish] == ["hello"]
    gate.on_event(Started(job_id="b", seq=0, attempt=1, source=EventSource.WORKER, worker="w", tenant="acme",
                          model=ModelInfo(id="m", device="cpu", dtype="float32")))
    assert gate.on_event(tok(1, "hello", job="b")).publish == []  # windowed: held until the window closes


def test_checked_mode_scores_a_polled_batch_of_streams_in_one_classifier_call():
    calls = []

    class Recording(BlocklistClassifier):
        def scores(self, texts):
            calls.append(list(texts))
            return super().scores(texts)

    gate = ModerationGate(Moderator(Recording([]), PolicyBook(Policy.build(block=["darn"]))), mode="checked")
    batch = [tok(0, "Hello", job="a"), tok(0, "Good", job="b"), tok(1, " world", job="a"), tok(1, " day", job="b")]
    gate.prefetch(batch)
    released = [e.text for event in batch for e in gate.on_event(event).publish]
    assert released == ["Hello", "Good", " world", " day"]
    assert len(calls) == 1 and calls[0] == ["Hello", "Good", "Hello world", "Good day"]


def _decisions(stage: str, action: str, category: str = "none") -> float:
    from prometheus_client import REGISTRY
    return REGISTRY.get_sample_value("genloom:moderation_decisions_total",
                                     {"stage": stage, "action": action, "category": category}) or 0.0


def test_the_gate_counts_each_window_it_allows_and_leaves_blocks_to_the_fan_out():
    # the fan-out counts the verdicts the gate publishes; the gate counts what publishes no verdict
    gate = ModerationGate(blocklist_moderator(["darn"]), window_chars=4)
    allowed, blocked = _decisions("output", "allowed"), _decisions("output", "blocked", "blocklist")
    gate.on_event(tok(0, "hello", job="m1"))
    gate.on_event(tok(1, "world", job="m1"))
    assert _decisions("output", "allowed") == allowed + 2
    gate.on_event(tok(0, "darn it", job="m2"))
    assert _decisions("output", "allowed") == allowed + 2
    assert _decisions("output", "blocked", "blocklist") == blocked
