"""A decode step of a Llama-family causal LM run straight through its layers' weights, without the
transformers module machinery around them.

A decode step computes one token per row, so a small model's step is dominated by what surrounds its
products: ``LlamaModel.forward``'s input checks and mask building (the engine's attention ignores the
mask: it attends row by row over each row's own keys), a decoder layer's and an attention module's
keyword plumbing, and ``nn.Module.__call__`` around each of the ~300 submodules. :class:`LlamaDecodeStep`
runs the same tensor operations in the same order on the same modules' weights (each Linear's own
``forward``, so a :class:`~infra.models.invariant.GemmLinear` pads and packs as before), so its logits
have the bits of ``model(...)`` (checked by the engine's tests), and greedy streams keep their tokens
alone and batched. Measured in the engine alone, one thread (`bench/decode_step.py`): a one-stream decode
step of the default model took 0.96x the time on an AMD EPYC with AVX2 (float32), 2 to 16 streams'
0.97-1.05x (noise of that host); an earlier scratch version took 0.95x at one stream on an EPYC with
AVX512-BF16 (bf16).

Used only where it is exactly that model: a ``LlamaForCausalLM`` whose layers are transformers' own Llama
modules, in eval mode, on one of genloom's attention functions, with no forward hook on any submodule
when the engine is built (:func:`llama_decode_step`). Anything else decodes through ``model(...)``. Hooks on
the model itself (``mark_prefills``' prefill marks) do not run for a direct decode step, which is no prefill.
"""

from __future__ import annotations

import torch
from torch import nn

from .invariant import ATTENTION, LAYOUT_ATTENTION, DecodeRows


def _rms_norm(norm: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """LlamaRMSNorm's arithmetic: normalised in float32, scaled by the weight in the input's dtype."""
    dtype = hidden.dtype
    x = hidden.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * x.to(dtype)


class LlamaDecodeStep:
    """``step(input_ids, position_ids, cache, rows)``: the logits ``[rows, 1, vocab]`` of one decode step,
    each row's new keys and values written into ``cache`` (a transformers ``Cache`` whose layers take
    ``update(key, value)``) as ``model(...)`` would write them."""

    def __init__(self, model: nn.Module) -> None:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        self._model = model
        self._inner = model.model
        self._attention = ALL_ATTENTION_FUNCTIONS[model.config._attn_implementation]

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, position_ids: torch.Tensor, cache, rows: DecodeRows) -> torch.Tensor:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        inner = self._inner
        hidden = inner.embed_tokens(input_ids)
        cos, sin = inner.rotary_emb(hidden, position_ids)
        batch = hidden.shape[0]
        for index, layer in enumerate(inner.layers):  # hot loop: 30 layers a step on the default model
            attn, mlp = layer.self_attn, layer.mlp
            x = _rms_norm(layer.input_layernorm, hidden)
            heads = (batch, 1, -1, attn.head_dim)
            query = attn.q_proj.forward(x).view(heads).transpose(1, 2)
            key = attn.k_proj.forward(x).view(heads).transpose(1, 2)
            value = attn.v_proj.forward(x).view(heads).transpose(1, 2)
            query, key = apply_rotary_pos_emb(query, key, cos, sin)
            key, value = cache.layers[index].update(key, value)
            out, _ = self._attention(attn, query, key, value, None, dropout=0.0, scaling=attn.scaling,
                                     genloom_rows=rows)
            hidden = hidden + attn.o_proj.forward(out.reshape(batch, 1, -1).contiguous())
            x = _rms_norm(layer.post_attention_layernorm, hidden)
            hidden = hidden + mlp.down_proj.forward(mlp.act_fn(mlp.gate_proj.forward(x)) * mlp.up_proj.forward(x))
        return self._model.lm_head.forward(_rms_norm(inner.norm, hidden))


def llama_decode_step(model: nn.Module) -> LlamaDecodeStep | None:
    """A :class:`LlamaDecodeStep` for ``model`` where it computes exactly what ``model(...)`` does: a
    transformers ``LlamaForCausalLM`` made of its own Llama modules (no other layer, norm or MLP classes),
    in eval mode, attending with genloom's row-by-row decode attention; else None."""
    try:
        from transformers.models.llama import modeling_llama as llama
    except ImportError:  # pragma: no cover - transformers always ships Llama
        return None
    if type(model) is not llama.LlamaForCausalLM or model.training:
        return None
    if model.config._attn_implementation not in (ATTENTION, LAYOUT_ATTENTION):
        return None
    inner = model.model
    layers_ok = all(
        type(layer) is llama.LlamaDecoderLayer and type(layer.self_attn) is llama.LlamaAttention
        and type(layer.mlp) is llama.LlamaMLP and type(layer.input_layernorm) is llama.LlamaRMSNorm
        and type(layer.post_attention_layernorm) is llama.LlamaRMSNorm
        for layer in inner.layers)
    if not layers_ok or type(inner.norm) is not llama.LlamaRMSNorm:
        return None
    if any(m._forward_hooks or m._forward_pre_hooks for m in (*inner.modules(), model.lm_head)):
        return None  # a submodule's hook would be skipped: someone is watching or changing its output
    return LlamaDecodeStep(model)
