"""The shared replay reader's bookkeeping, without Redis: who gets a pushed entry, when a follower is
behind and reads its log instead, and how a read of the log that raced a push is told apart."""

from __future__ import annotations

import pytest

from infra.redis.replay_dispatch import Dispatcher, Follower, entry_number, parse_push, push_payload

KEY, OTHER = b"genloom:{a}:log", b"genloom:{b}:log"


def _raw(n: int) -> tuple[bytes, dict[bytes, bytes]]:
    return b"%d-0" % n, {b"type": b"token", b"data": b'{"seq": %d}' % n}


def _push(dispatch: Dispatcher, key: bytes, n: int) -> list[Follower]:
    return dispatch.push(key, push_payload(n, b"token", b'{"seq": %d}' % n))


def _live(key: bytes = KEY, cursor: int = 0, capacity: int = 4) -> Follower:
    follower = Follower(key, cursor, capacity)
    follower.behind = False  # caught up: takes pushes
    return follower


def test_a_push_round_trips_as_the_entry_xrange_gives():
    payload = push_payload(7, b"token", b'{"text": "a b  c"}')
    assert payload == b'7 token {"text": "a b  c"}'
    assert parse_push(payload) == (7, (b"7-0", {b"type": b"token", b"data": b'{"text": "a b  c"}'}))
    assert entry_number(b"12-0") == 12
    with pytest.raises(ValueError):
        parse_push(b"garbage")


def test_each_follower_gets_only_its_own_logs_entries_in_order():
    dispatch = Dispatcher()
    a1, a2, b = _live(KEY), _live(KEY), _live(OTHER)
    assert dispatch.add(a1) is True and dispatch.add(a2) is False and dispatch.add(b) is True
    for n in (1, 2, 3):
        assert set(_push(dispatch, KEY, n)) == {a1, a2}
    assert _push(dispatch, OTHER, 1) == [b]
    assert [entry_number(e[0]) for e in a1.queue] == [1, 2, 3] == [entry_number(e[0]) for e in a2.queue]
    assert [entry_number(e[0]) for e in b.queue] == [1]
    assert _push(dispatch, b"genloom:{nobody}:log", 1) == []


def test_a_new_follower_is_behind_until_it_has_read_its_backlog():
    follower = Follower(KEY, 2, capacity=4)
    assert follower.behind
    assert follower.push(5, _raw(5)) is False and follower.missed == 1  # it reads 3.. from the log first
    missed = follower.missed
    taken = follower.offer([_raw(n) for n in (1, 2, 3, 4, 5)])
    assert taken == 3 and follower.cursor == 5  # 1 and 2 were before its cursor (Last-Event-ID 2)
    follower.caught_up(read=5, asked=4, missed_before=missed)
    assert follower.behind  # it got all it asked for: there may be more
    follower.caught_up(read=3, asked=4, missed_before=missed)
    assert not follower.behind
    assert follower.push(6, _raw(6)) and follower.cursor == 6


def test_a_push_during_the_backlog_read_keeps_the_follower_behind():
    follower = Follower(KEY, 0, capacity=8)
    missed = follower.missed
    follower.push(3, _raw(3))  # came while the XRANGE was on its way: it may not hold entry 3
    follower.offer([_raw(1), _raw(2)])
    follower.caught_up(read=2, asked=8, missed_before=missed)
    assert follower.behind  # so it reads again, from 2, and gets 3
    missed = follower.missed
    follower.offer([_raw(3)])
    follower.caught_up(read=1, asked=8, missed_before=missed)
    assert not follower.behind and follower.cursor == 3


def test_a_full_queue_lets_pushes_go_and_the_follower_reads_them_from_its_cursor_later():
    dispatch = Dispatcher()
    slow = _live(capacity=2)
    dispatch.add(slow)
    assert _push(dispatch, KEY, 1) == [slow] and _push(dispatch, KEY, 2) == [slow]
    assert _push(dispatch, KEY, 3) == []  # full: not taken, and no wake (it has entries to take)
    assert slow.behind and slow.full and len(slow.queue) == 2 and slow.cursor == 2
    assert [entry_number(slow.take()[0]), entry_number(slow.take()[0])] == [1, 2]
    assert not slow.queue and slow.room == 2
    missed = slow.missed
    slow.offer([_raw(3), _raw(4), _raw(5)])  # the log still has what the queue could not hold
    assert [entry_number(e[0]) for e in slow.queue] == [3, 4] and slow.full
    slow.caught_up(read=2, asked=2, missed_before=missed)
    assert slow.behind  # full again: still reading from its cursor, never skipping 5


def test_a_gap_in_the_pushes_wakes_the_follower_to_read_its_log():
    dispatch = Dispatcher()
    follower = _live()
    dispatch.add(follower)
    _push(dispatch, KEY, 1)
    follower.take()
    assert _push(dispatch, KEY, 3) == [follower]  # 2 never came (a push lost on the way)
    assert follower.behind and not follower.queue and follower.cursor == 1


def test_duplicates_and_a_lost_store_hand_nothing_over():
    follower = _live(cursor=3)
    assert follower.push(2, _raw(2)) is False and follower.push(3, _raw(3)) is False
    assert not follower.behind and follower.missed == 0  # older entries are no gap
    follower.lost()
    assert follower.push(4, _raw(4)) is False and follower.offer([_raw(4)]) == 0 and follower.reset


def test_leaving_frees_the_key_once_its_last_follower_leaves():
    dispatch = Dispatcher()
    one, two = _live(), _live()
    dispatch.add(one)
    dispatch.add(two)
    assert dispatch.remove(one) is False and KEY in dispatch.followers
    assert dispatch.remove(two) is True and KEY not in dispatch.followers and len(dispatch) == 0
    assert dispatch.remove(two) is False  # leaving twice is harmless
