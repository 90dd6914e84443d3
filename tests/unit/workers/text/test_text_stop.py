"""StopStringMatcher on streamed deltas."""

from __future__ import annotations

from workers.text.stop import StopStringMatcher


def feed_all(matcher: StopStringMatcher, deltas: list[str]) -> tuple[list[str], bool]:
    emitted = []
    for delta in deltas:
        text, stopped = matcher.feed(delta)
        emitted.append(text)
        if stopped:
            return emitted, True
    return emitted, False


def test_stop_split_across_deltas_is_cut_with_everything_after() -> None:
    emitted, stopped = feed_all(StopStringMatcher(["END!"]), ["Hello E", "N", "D! tail", "more"])
    assert stopped
    assert "".join(emitted) == "Hello "
    assert emitted[0] == "Hello "  # "E" is held back: it may start the stop string


def test_held_prefix_is_released_when_it_does_not_match() -> None:
    matcher = StopStringMatcher(["END!"])
    assert matcher.feed("an EN") == ("an ", False)
    assert matcher.feed("try") == ("ENtry", False)
    assert matcher.feed(" E") == (" ", False)
    assert matcher.flush() == "E"


def test_earliest_of_several_stops_wins() -> None:
    text, stopped = StopStringMatcher(["world", "lo"]).feed("hello world")
    assert stopped and text == "hel"


def test_no_stops_passes_text_through() -> None:
    assert StopStringMatcher([]).feed("abc") == ("abc", False)
