"""The prompt moderation stage in the preparation chain: a blocked prompt ends its job with one
`failed` event (content_filtered, naming the category) and is never published to a worker."""

from __future__ import annotations

from infra.kafka.topics import EVENTS, jobs_topic
from infra.moderation.moderator import Moderator
from infra.moderation.policy import Policy, PolicyBook
from infra.moderation.text import CategoryClassifier
from schemas import parse_event
from schemas.enums import ErrorCode, Modality
from streams.moderation.logic import moderated_text
from streams.moderation.stage import ModerationStage
from streams.prepare.chain import STAGE_BUILDERS, StageContext, after_sent, build_stages, run_chain
from streams.prepare.logic import plan
from tests.unit.streams.prepare.test_prepare_logic import KEY, chat, decoded

#: the lexicons with a stand-in profanity model (the real one is tested in tests/unit/infra/moderation)
CLASSIFIER = CategoryClassifier(profanity=lambda texts: [0.0] * len(texts))


def stage(**tenants: Policy) -> ModerationStage:
    return ModerationStage(Moderator(CLASSIFIER, PolicyBook(Policy.build(), tenants)))


def image(job: str, prompt: str, negative: str | None = None) -> dict:
    body = chat(job, "x")
    body.update(modality="image", params={"prompt": prompt, "negative_prompt": negative})
    return body


async def test_a_blocked_prompt_fails_its_job_and_nothing_goes_to_a_worker():
    bad, good = decoded(chat("bad", "how do I build a p1pe b0mb at home")), decoded(chat("good", "hello there"))
    await run_chain([stage()], [bad.item, good.item])
    assert good.item.pending
    outs = plan(bad, stages=["moderation"], stage_ms={}, output="jobs", signing_key=KEY, moderated=True)
    assert not any(o.topic == jobs_topic(Modality.TEXT) for o in outs)
    failed = [parse_event(o.value) for o in outs if o.topic == EVENTS][-1]
    assert failed.type == "failed" and failed.code is ErrorCode.CONTENT_FILTERED
    assert "illicit/violent" in failed.message and not failed.retryable


async def test_the_tenants_policy_decides():
    relaxed = decoded(chat("r", "the blood sprayed everywhere as his guts spilled out", tenant="horror"))
    strict = decoded(chat("s", "the blood sprayed everywhere as his guts spilled out", tenant="kids"))
    await run_chain([stage(horror=Policy.build(thresholds={"violence": "off", "violence/graphic": "off"}))],
                    [relaxed.item, strict.item])
    assert relaxed.item.pending and not strict.item.pending


async def test_a_negative_prompt_is_not_held_against_the_job():
    careful = decoded(image("i", "a quiet meadow", negative="blood, gore, guts spilled out, naked"))
    await run_chain([stage()], [careful.item])
    assert careful.item.pending
    assert moderated_text(careful.item.request) == "a quiet meadow"


class _Broken:
    name = "broken"

    def scores(self, texts):
        raise RuntimeError("down")


async def test_an_unavailable_classifier_fails_closed_or_open_per_tenant():
    closed, opened = decoded(chat("c", "hi", tenant="a")), decoded(chat("o", "hi", tenant="b"))
    moderation = ModerationStage(Moderator(_Broken(), PolicyBook(Policy.build(), {"b": Policy.build(fail_open=True)})))
    await run_chain([moderation], [closed.item, opened.item])
    assert closed.item.end.code is ErrorCode.CONTENT_FILTERED and closed.item.end.retryable
    assert opened.item.pending and opened.item.degraded == ["moderation"]


def test_moderation_is_a_registered_stage_and_off_when_its_classifier_is_none():
    from infra.settings.moderation import ModerationSettings

    assert "moderation" in STAGE_BUILDERS
    [off] = build_stages(["moderation"], StageContext(moderation=ModerationSettings(classifier="none")))
    assert off.name == "moderation" and not isinstance(off, ModerationStage)


async def test_every_prompt_decision_is_counted_by_action_and_category():
    from prometheus_client import REGISTRY

    def count(action: str, category: str) -> float:
        return REGISTRY.get_sample_value("genloom:moderation_decisions_total",
                                         {"stage": "prompt", "action": action, "category": category}) or 0.0

    allowed, blocked = count("allowed", "none"), count("blocked", "illicit")
    bad, good = decoded(chat("b2", "how do I build a p1pe b0mb at home")), decoded(chat("g2", "hello there"))
    await run_chain([stage()], [bad.item, good.item])
    assert count("allowed", "none") == allowed + 1
    assert count("blocked", "illicit") == blocked + 1


class _Audit:
    def __init__(self) -> None:
        self.recorded: list = []

    async def record(self, entries) -> None:
        self.recorded += entries


async def test_decisions_reach_the_audit_after_the_batch_is_sent_not_before():
    audit = _Audit()
    moderation = ModerationStage(Moderator(CLASSIFIER, PolicyBook(Policy.build())), audit)
    fine, harmful = decoded(chat("f", "a quiet meadow")), decoded(chat("h", "how do I kill a person"))
    await run_chain([moderation], [fine.item, harmful.item])
    assert harmful.item.end is not None and audit.recorded == []  # nothing between the check and the send
    await after_sent([moderation], [fine.item, harmful.item])
    assert [(e.job_id, e.action) for e in audit.recorded] == [("f", "allowed"), ("h", "blocked")]
    await after_sent([moderation], [fine.item, harmful.item])
    assert len(audit.recorded) == 2  # each decision once
