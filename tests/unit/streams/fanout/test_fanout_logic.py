"""Pure fan-out decisions: reading messages, webhook helpers."""

from __future__ import annotations

import pytest
from redis.exceptions import BusyLoadingError, OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from schemas.enums import EventSource
from schemas.events import TokenDelta
from infra.fanout.logic import Malformed, read_event, transient
from streams.fanout.webhooks import backoff, event_id, should_retry

W = EventSource.WORKER


def _read(value: bytes | None):
    return read_event(topic="genloom.events", partition=3, offset=7, key=b"k", value=value, consumer="c")


@pytest.mark.parametrize(
    "value, code",
    [(None, "malformed_message"), (b"", "malformed_message"), (b"{nope", "invalid_json"),
     (b'{"type": "token", "job_id": "j"}', "malformed_message"), (b'{"type": "bogus"}', "malformed_message")],
)
def test_malformed_messages_become_dead_letters(value, code):
    item = _read(value)
    assert isinstance(item, Malformed)
    assert item.letter.code.value == code and item.letter.partition == 3 and item.letter.offset == 7


def test_valid_message_is_an_event():
    event = TokenDelta(job_id="j", seq=1, source=W, text="a", tokens=1)
    assert _read(event.model_dump_json().encode()) == event


def test_event_ids():
    assert event_id("job_1", 7) == "job_1:7"


def test_backoff_doubles_and_caps():
    assert list(backoff(5, 0.5, 3.0)) == [0.5, 1.0, 2.0, 3.0]
    assert list(backoff(1, 0.5, 3.0)) == []


def test_retry_policy():
    assert should_retry(500) and should_retry(503) and should_retry(429) and should_retry(408)
    assert not should_retry(400) and not should_retry(404) and not should_retry(410)


@pytest.mark.parametrize("error, retried", [
    (ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."), True),
    (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), True),
    (ReadOnlyError("You can't write against a read only replica."), True),
    (BusyLoadingError("Redis is loading the dataset in memory"), True),
    (RedisConnectionError("Connection refused"), True),
    (ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
    (ResponseError("ERR user_script:3: attempt to compare nil with number"), False),
])
def test_redis_refusals_are_retried_and_errors_about_the_message_are_not(error, retried):
    assert transient(error) is retried
