"""The chat parameters a worker honours (penalties, logit_bias, logprobs) reach the job; bad ones are 400s
naming them, before queueing."""

from __future__ import annotations

import pytest

from gateway.errors import ApiError
from gateway.openai.translate import logit_bias_ids, parse_chat_body, to_text_request
from infra.models.catalog import TextModelCatalog, TextModelEntry

MODEL = "m"
MESSAGES = [{"role": "user", "content": "hi"}]


class _Tokenizer:
    def __len__(self) -> int:
        return 100


def _job(**fields):
    body = parse_chat_body({"model": MODEL, "messages": MESSAGES, **fields})
    catalog = TextModelCatalog([TextModelEntry(MODEL, "/nowhere")])
    return to_text_request(body, tenant="t", job_id=None, catalog=catalog)


def test_penalties_bias_and_logprobs_reach_the_job() -> None:
    params = _job(presence_penalty=0.5, frequency_penalty=-1, logit_bias={"7": 100, "12": -100.0},
                  logprobs=True, top_logprobs=3).params
    assert (params.presence_penalty, params.frequency_penalty) == (0.5, -1.0)
    assert params.logit_bias == {7: 100.0, 12: -100.0}
    assert params.logprobs and params.top_logprobs == 3
    plain = _job().params
    assert plain.logit_bias == {} and not plain.logprobs and plain.presence_penalty == 0.0


@pytest.mark.parametrize("fields, param", [
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"logit_bias": {"-3": 1}}, "logit_bias"),
    ({"logit_bias": {"5": 150}}, "logit_bias"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"presence_penalty": 3}, "presence_penalty"),
])
def test_bad_parameters_are_400_naming_them(fields, param) -> None:
    with pytest.raises(ApiError) as info:
        _job(**fields)
    assert info.value.status == 400
    assert info.value.param == param


def test_logit_bias_ids_past_the_vocabulary_are_refused() -> None:
    body = parse_chat_body({"model": MODEL, "messages": MESSAGES, "logit_bias": {"99": 1, "5": 2}})
    assert logit_bias_ids(body, len(_Tokenizer())) == {99: 1.0, 5: 2.0}
    body = parse_chat_body({"model": MODEL, "messages": MESSAGES, "logit_bias": {"100": 1}})
    with pytest.raises(ApiError) as info:
        logit_bias_ids(body, len(_Tokenizer()))
    assert info.value.param == "logit_bias"


def test_n_choices_are_jobs_of_their_own_with_derived_ids_and_seeds() -> None:
    from gateway.openai.translate import choice_requests

    first = _job(n=3, seed=5, temperature=1.0)
    jobs = choice_requests(first, 3)
    assert [j.job_id for j in jobs] == [first.job_id, f"{first.job_id}.1", f"{first.job_id}.2"]
    assert [j.params.seed for j in jobs] == [5, 6, 7]
    assert all(j.params.messages == first.params.messages and j.tenant == "t" for j in jobs)
    unseeded = choice_requests(_job(n=2), 2)
    assert [j.params.seed for j in unseeded] == [None, None]
    assert choice_requests(first, 1) == [first]


def test_a_key_too_long_for_n_choices_is_a_400_naming_it() -> None:
    from gateway.openai.translate import choice_requests

    body = parse_chat_body({"model": MODEL, "messages": MESSAGES, "n": 2})
    job = to_text_request(body, tenant="t", job_id="k" * 127,
                          catalog=TextModelCatalog([TextModelEntry(MODEL, "/nowhere")]))
    with pytest.raises(ApiError) as info:
        choice_requests(job, 2)
    assert info.value.param == "Idempotency-Key"


@pytest.mark.parametrize("n", [0, 9, 100])
def test_n_out_of_range_is_a_400_naming_n(n) -> None:
    with pytest.raises(ApiError) as info:
        parse_chat_body({"model": MODEL, "messages": MESSAGES, "n": n})
    assert info.value.param == "n"


def test_merged_choices_count_the_prompt_once() -> None:
    from gateway.openai.translate import ChunkWriter, merge_choices, merged_usage
    from schemas.enums import FinishReason
    from schemas.events import Usage

    writer = ChunkWriter("chatcmpl-x", MODEL)
    answers = [writer.final(text, FinishReason.STOP, Usage(prompt_tokens=10, completion_tokens=tokens))
               for text, tokens in (("red", 2), ("blue", 3))]
    merged = merge_choices(answers)
    assert [(c.index, c.message.content) for c in merged.choices] == [(0, "red"), (1, "blue")]
    assert (merged.usage.prompt_tokens, merged.usage.completion_tokens, merged.usage.total_tokens) == (10, 5, 15)
    assert merged.id == "chatcmpl-x"
    usage = merged_usage([Usage(prompt_tokens=10, completion_tokens=2), Usage(prompt_tokens=10, completion_tokens=3)])
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 5, 15)
