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
