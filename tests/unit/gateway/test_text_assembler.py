import pytest

from gateway.openai.translate import AttemptDiverged, TextAssembler


def test_one_attempt_streams_every_delta():
    t = TextAssembler()
    assert [t.add(1, "Hel"), t.add(1, "lo"), t.add(1, "!")] == ["Hel", "lo", "!"]
    assert t.sent == "Hello!"


def test_a_takeover_resends_nothing_the_client_already_has():
    t = TextAssembler()
    t.add(1, "Once ")
    t.add(1, "upon")
    # the new worker starts over from the beginning, with the same (greedy or seeded) text
    assert t.add(2, "Once") == ""
    assert t.add(2, " up") == ""
    assert t.add(2, "on a ti") == " a ti"
    assert t.add(2, "me") == "me"
    assert t.sent == "Once upon a time"


def test_a_takeover_by_a_worker_whose_clock_is_behind_streams_its_text():
    t = TextAssembler()
    t.add(1_700_000_000_000, "Once ")
    assert t.add(1_699_999_000_000, "Once upon") == "upon"  # the smaller number started later
    assert t.add(1_700_000_000_000, "zzz") == ""  # the superseded attempt, late
    assert t.sent == "Once upon"


def test_late_events_of_the_superseded_attempt_are_ignored():
    t = TextAssembler()
    t.add(1, "A")
    t.add(2, "AB")
    assert t.add(1, "zzz") == ""
    assert t.sent == "AB"


def test_a_new_attempt_with_different_text_is_an_error():
    t = TextAssembler()
    t.add(1, "The cat")
    with pytest.raises(AttemptDiverged, match="retry the request"):
        t.add(2, "A dog")
