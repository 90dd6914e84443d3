"""The text engine on SmolLM2 with int8 weights (GENLOOM_TEXT_DTYPE=int8, infra/models/int8.py): greedy
streams keep their tokens alone, batched and after a cached head, as in float32 and bf16; the loader
reports and replaces what it says; perplexity stays within 2% of float32's."""

from __future__ import annotations

import pytest
import torch

from infra.models import int8
from infra.models.loader import LoadedModel, TextModelSpec, load_text_model

# the engine's own tests, run here on the int8 model (the `smollm` fixture below overrides conftest's)
from tests.unit.workers.text.test_text_engine import (  # noqa: F401
    prompts,
    solo,
    test_a_cached_prompt_head_is_not_computed_again_and_changes_no_token,
    test_a_direct_decode_step_gives_the_model_calls_bits,
    test_batched_greedy_equals_solo,
    test_greedy_streams_pick_the_same_tokens_alone_and_in_any_batch,
    test_solo_matches_transformers_generate,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not int8.available(), reason="no C compiler or no AVX2/AVX512 here")]


@pytest.fixture(scope="module")
def smollm() -> LoadedModel:
    return load_text_model(TextModelSpec(dtype="int8"))


def test_every_linear_holds_int8_weights_and_the_model_says_so(smollm: LoadedModel) -> None:
    linears = [m for m in smollm.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears == []
    held = [m for m in smollm.model.modules() if isinstance(m, int8.Int8Linear)]
    assert len(held) == 30 * 7 + 1  # seven per layer and the output head
    assert smollm.model.get_input_embeddings().weight.dtype == torch.float32  # the lookup keeps float32
    assert smollm.dtype == torch.float32 and smollm.dtype_name == "int8"
    assert all(m.qweight.dtype == torch.int8 and m.qweight.shape == (m.out_features, m.in_features) for m in held)
    assert sum(m.qweight.numel() for m in held) == 134_479_872  # every Linear weight of the model, one byte each


def test_int8_perplexity_is_within_two_percent_of_float32s() -> None:
    """The issue's bar for reduced weights, on held-out prose (the first 12 paragraphs of the eval's corpus)."""
    from infra.evaluation.text import corpus_perplexity, sklearn_prose

    prose = sklearn_prose()[:12]
    full = load_text_model(TextModelSpec(dtype="float32", float32_packed=False))
    reference, count = corpus_perplexity(full.model, full.tokenizer, prose)
    int8.quantize_model(full.model)
    quantised, same_count = corpus_perplexity(full.model, full.tokenizer, prose)
    assert count == same_count > 500
    assert quantised != reference  # the weights did change
    assert abs(quantised / reference - 1) < 0.02, (quantised, reference)


def test_an_int8_request_on_a_gpu_says_what_to_do() -> None:
    from infra.models.loader import ModelLoadError

    with pytest.raises(ModelLoadError, match="CPU only"):
        load_text_model(TextModelSpec(dtype="int8", device="cuda"))


def test_the_worker_reports_int8_from_the_engine_process(smollm: LoadedModel) -> None:
    """The text worker's side of an engine in another process (ServedTokenizer) reports what the engine
    process loaded: int8, as the worker's model info (every job's record carries it)."""
    from infra.models.loader import load_text_tokenizer
    from workers.text.handler import TextHandler

    served = load_text_tokenizer(TextModelSpec(dtype="int8"), device="cpu", dtype=smollm.dtype_name,
                                 context_length=smollm.context_length)
    assert served.dtype_name == "int8"
    handler = TextHandler(TextModelSpec(dtype="int8"), served_name="smollm", engine_process=True)
    handler.loaded = served
    assert handler.model_info.dtype == "int8" and handler.model_info.device == "cpu"
