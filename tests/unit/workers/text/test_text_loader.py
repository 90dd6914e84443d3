"""Loader: the default SmolLM2 cache, chat formatting and actionable errors."""

from __future__ import annotations

import pytest
import torch

from infra.models import int8
from infra.models.invariant import ATTENTION, LAYOUT_ATTENTION, GemmLinear, PackedLinear, native_bf16
from infra.models.loader import LoadedModel, ModelLoadError, TextModelSpec, load_text_model


@pytest.mark.slow
def test_default_model_loads_offline_with_chat_template(smollm: LoadedModel) -> None:
    assert smollm.model_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    # auto: bf16 where the CPU multiplies it natively, made batch-invariant (GemmLinear, float64 attention);
    # elsewhere int8 weights where the kernel builds (AVX512F, or AVX2 with FMA), else float32
    assert smollm.dtype == (torch.bfloat16 if native_bf16() else torch.float32) and smollm.device.type == "cpu"
    int8_expected = not native_bf16() and int8.available()
    assert smollm.dtype_name == ("int8" if int8_expected else str(smollm.dtype).removeprefix("torch."))
    if int8_expected:  # every Linear int8, the float32 attention layout
        assert smollm.model.config._attn_implementation == LAYOUT_ATTENTION
        assert not [m for m in smollm.model.modules() if isinstance(m, torch.nn.Linear)]
        assert type(smollm.model.get_output_embeddings()) is int8.Int8Linear
    elif smollm.dtype == torch.bfloat16:
        assert smollm.model.config._attn_implementation == ATTENTION
        assert all(type(m) is not torch.nn.Linear for m in smollm.model.modules())
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():  # every weight packed once; the plain copies released
            linears = [m for m in smollm.model.modules() if isinstance(m, GemmLinear)]
            assert all(m.packed is not None for m in linears)
            head, embedding = smollm.model.lm_head, smollm.model.get_input_embeddings()
            assert head.weight is embedding.weight and head.weight.shape == (49152, 576)  # tied: kept for the lookup
            assert all(m.weight.numel() == 0 for m in linears if m is not head)
    else:  # float32: the same attention layout in float32, the output head's weight packed
        assert smollm.model.config._attn_implementation == LAYOUT_ATTENTION
        if torch.backends.mkldnn.is_available():
            head = smollm.model.get_output_embeddings()
            assert type(head) is PackedLinear and head.packed is not None
            assert head.weight is smollm.model.get_input_embeddings().weight  # tied: kept for the lookup
    assert smollm.context_length == 8192
    ids = smollm.format_chat([{"role": "user", "content": "hi"}])
    text = smollm.tokenizer.decode(ids)
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nhi<|im_end|>" in text
    # The turn terminator is EOS (the GGUF metadata says <|im_start|>; the loader fixes it).
    assert smollm.tokenizer.eos_token == "<|im_end|>"


def test_missing_model_raises_model_load_error(tmp_path) -> None:
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ModelLoadError, match="no-such-model"):
        load_text_model(TextModelSpec(model=missing, cache_dir=tmp_path))


def test_spec_rejects_unknown_dtype() -> None:
    with pytest.raises(ValueError, match="dtype"):
        TextModelSpec(dtype="int3")  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_bf16_prefill_takes_tiles_only_where_asked_and_where_they_are_exact() -> None:
    """GENLOOM_TEXT_PREFILL_TILES reaches every layer: off, no layer tiles a prefill; on (the default), a layer
    tiles one only where its packed product of more than 32 rows was found inexact, the wide ones never
    (on this AMX Xeon every layer of the default model tiles; on an AVX512-BF16 EPYC none needs to)."""
    from infra.models.invariant import MAX_ROWS, TILE_ROWS, WIDE_ROWS

    off = load_text_model(TextModelSpec(dtype="bfloat16", prefill_tiles=False))
    assert all(m.tile_rows == 0 for m in off.model.modules() if isinstance(m, GemmLinear))
    on = load_text_model(TextModelSpec(dtype="bfloat16"))
    layers = [m for m in on.model.modules() if isinstance(m, GemmLinear)]
    assert layers and all(m.tile_rows in (0, TILE_ROWS) for m in layers)
    assert all(m.max_rows == MAX_ROWS and m.packed is not None for m in layers if m.tile_rows)
    assert all(m.tile_rows == 0 for m in layers if m.max_rows == WIDE_ROWS)


@pytest.mark.slow
def test_a_float32_model_packs_its_linears_unless_told_not_to() -> None:
    """GENLOOM_TEXT_FLOAT32_PACKED reaches the loader: on (the default), every Linear of a float32 model on CPU
    but the head keeps its plain weight and gets a packed copy; off, only the output head is packed."""
    from infra.models.invariant import Float32Linear

    assert torch.backends.mkldnn.is_available()  # torch's CPU build ships oneDNN
    on = load_text_model(TextModelSpec(dtype="float32"))
    layers = [m for m in on.model.modules() if isinstance(m, torch.nn.Linear) and m is not on.model.lm_head]
    assert layers and all(type(m) is Float32Linear and m.packed is not None and m.weight.numel() for m in layers)
    off = load_text_model(TextModelSpec(dtype="float32", float32_packed=False))
    assert not any(isinstance(m, Float32Linear) for m in off.model.modules())
    assert type(off.model.lm_head) is PackedLinear and off.model.lm_head.packed is not None
    ids = on.format_chat([{"role": "user", "content": "hi"}])
    with torch.no_grad():
        assert torch.allclose(on.model(torch.tensor([ids] * 2)).logits, off.model(torch.tensor([ids] * 2)).logits,
                              rtol=1e-3, atol=1e-3)


def test_auto_serves_float32_and_says_why_where_the_int8_kernel_is_unavailable(monkeypatch, caplog) -> None:
    from infra.models import loader

    def unavailable() -> int:
        raise int8.Int8Unavailable("no compiler here; install gcc")

    monkeypatch.setattr(loader, "native_bf16", lambda: False)
    monkeypatch.setattr(int8, "lanes", unavailable)
    loader._int8_lanes.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="infra.models.loader"):
            assert loader.resolve_weights("auto", torch.device("cpu")) == "float32"
            assert loader.resolve_weights("auto", torch.device("cpu")) == "float32"
        assert [r.getMessage() for r in caplog.records].count(
            "GENLOOM_TEXT_DTYPE=auto serves float32 on this CPU instead of int8 weights: no compiler here; install gcc") == 1
        monkeypatch.setattr(int8, "lanes", lambda: 16)
        loader._int8_lanes.cache_clear()
        assert loader.resolve_weights("auto", torch.device("cpu")) == "int8"
        assert loader.resolve_dtype("auto", torch.device("cpu")) == torch.float32  # int8 weights compute in float32
        monkeypatch.setattr(int8, "lanes", lambda: 8)  # AVX2 with FMA: the same choice
        loader._int8_lanes.cache_clear()
        assert loader.resolve_weights("auto", torch.device("cpu")) == "int8"
        assert loader.resolve_weights("float32", torch.device("cpu")) == "float32"
        monkeypatch.setattr(loader, "native_bf16", lambda: True)  # native bf16 comes first
        assert loader.resolve_weights("auto", torch.device("cpu")) == "bfloat16"
    finally:
        loader._int8_lanes.cache_clear()
