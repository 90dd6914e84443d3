"""Tenant policies: thresholds per category, block and allow lists, failure handling, and the
settings that build them (an unknown category is an error at start)."""

import asyncio

import pytest
from pydantic import ValidationError

from infra.moderation.moderator import Moderator
from infra.moderation.policy import BLOCKLIST, Policy, PolicyBook
from infra.moderation.text import CategoryClassifier
from infra.settings.moderation import ModerationSettings

SCORES = {"violence": 0.7, "sexual": 0.6, "hate": 0.1}


def test_a_score_at_or_over_its_threshold_fires():
    decision = Policy.build().decide("x", SCORES)
    assert not decision.allowed and set(decision.categories) == {"violence", "sexual"}
    assert decision.score == 0.7


def test_a_tenant_can_raise_lower_or_turn_off_a_category():
    policy = Policy.build(thresholds={"violence": 0.8, "sexual": "off", "hate": 0.05})
    assert policy.decide("x", SCORES).categories == ["hate"]


def test_block_list_blocks_whatever_the_scores():
    decision = Policy.build(block=["zorp"]).decide("a Z0RP here", {"violence": 0.0})
    assert not decision.allowed and decision.categories == [BLOCKLIST] and decision.reason


def test_allow_list_masks_terms_before_scoring():
    policy = Policy.build(allow=["breast"])
    assert "breast" not in policy.mask("Breast exam")


def test_failure_closes_by_default_and_opens_on_request():
    assert not Policy.build().on_failure("timed out").allowed
    opened = Policy.build(fail_open=True).on_failure("timed out")
    assert opened.allowed and "fails open" in opened.reason


def test_settings_build_tenant_policies_on_top_of_the_defaults():
    settings = ModerationSettings(
        thresholds="violence=0.9",
        tenant_policies='{"acme": {"thresholds": {"sexual": "off"}, "block": ["zorp"], "on_error": "open"}}')
    book = settings.policies()
    acme, other = book.of("acme"), book.of("other")
    assert acme.thresholds["sexual"] is None and acme.thresholds["violence"] == 0.9 and acme.fail_open
    assert other.thresholds["sexual"] == 0.5 and other.thresholds["violence"] == 0.9 and not other.fail_open
    assert not acme.decide("zorp", {}).allowed and other.decide("zorp", {}).allowed


@pytest.mark.parametrize("env, fragment", [
    ({"thresholds": "violense=0.5"}, "unknown moderation category 'violense'"),
    ({"tenant_policies": '{"acme": {"thresholds": {"gore": 0.5}}}'}, "unknown moderation category 'gore'"),
    ({"tenant_policies": '{"acme": {"colour": "red"}}'}, "unknown keys"),
    ({"tenant_policies": '{"acme": {"thresholds": {"sexual": 2}}}'}, "from 0 to 1"),
    ({"tenant_policies": "not json"}, "not JSON"),
    ({"thresholds": "violence"}, "category=threshold"),
])
def test_bad_policies_fail_at_start_with_a_message_that_says_what_to_fix(env, fragment):
    with pytest.raises(ValidationError) as info:
        ModerationSettings(**env)
    assert fragment in str(info.value)


def test_a_policy_that_blocks_everything_blocks_without_hanging():
    everything = Policy.build(thresholds={c: 0.0 for c in Policy.build().thresholds})
    moderator = Moderator(CategoryClassifier(profanity=lambda texts: [0.0] * len(texts)), PolicyBook(everything))
    assert not any(d.allowed for d in moderator.check([(None, "hello"), (None, "")]))


class _Slow:
    name = "slow"

    def scores(self, texts):
        import time

        time.sleep(0.5)
        return [{} for _ in texts]


async def test_a_slow_classifier_is_decided_by_each_tenants_policy():
    book = PolicyBook(Policy.build(), {"open": Policy.build(fail_open=True)})
    decisions = await Moderator(_Slow(), book, timeout_s=0.05).check_async([("closed", "a"), ("open", "b")])
    assert [d.allowed for d in decisions] == [False, True]
    assert all("timed out" in d.reason for d in decisions)
    await asyncio.sleep(0.5)  # let the worker thread finish before the loop closes


class _Where:
    """A cheap classifier (`inline`) that notes the thread each batch is scored on."""

    name = "where"
    inline = True

    def __init__(self, fail: bool = False) -> None:
        self.threads: list[int] = []
        self.fail = fail

    def scores(self, texts):
        import threading

        self.threads.append(threading.get_ident())
        if self.fail:
            raise RuntimeError("down")
        return [{} for _ in texts]


async def test_a_cheap_classifier_checks_short_batches_on_the_loop_and_long_ones_in_a_thread():
    import threading

    from infra.moderation.text import INLINE_CHARS

    where = _Where()
    moderator = Moderator(where, PolicyBook(Policy.build()))
    await moderator.check_async([(None, "a short prompt"), (None, "and another")])
    await moderator.check_async([(None, "x" * (INLINE_CHARS // 2)), (None, "y" * (INLINE_CHARS // 2 + 1))])
    assert where.threads[0] == threading.get_ident() and where.threads[1] != threading.get_ident()
    assert await Moderator(_Slow(), PolicyBook(Policy.build())).check_async([]) == []


async def test_a_cheap_classifier_that_fails_on_the_loop_is_decided_by_each_tenants_policy():
    book = PolicyBook(Policy.build(), {"open": Policy.build(fail_open=True)})
    decisions = await Moderator(_Where(fail=True), book).check_async([("closed", "a"), ("open", "b")])
    assert [d.allowed for d in decisions] == [False, True] and all("RuntimeError" in d.reason for d in decisions)
