"""int8 dynamic quantisation and the measures of what it can reach."""

from __future__ import annotations

import torch
from torch import nn

from infra.evaluation.quant import linear_flop_share, linear_share, quantise_linear, weight_bytes


def test_quantised_copy_is_smaller_close_and_leaves_the_original_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 16)).eval()
    x = torch.randn(8, 256)
    q = quantise_linear(model)
    assert isinstance(model[0], nn.Linear) and type(q[0]) is not nn.Linear
    assert weight_bytes(q) < 0.4 * weight_bytes(model)
    with torch.inference_mode():
        assert torch.allclose(q(x), model(x), atol=0.05)


def test_linear_share_counts_a_tied_weight_as_the_embedding() -> None:
    emb = nn.Embedding(100, 10)
    head = nn.Linear(10, 100, bias=False)
    head.weight = emb.weight
    model = nn.ModuleDict({"emb": emb, "mid": nn.Linear(10, 10, bias=False), "head": head})
    assert linear_share(model) == 100 / 1100


def test_linear_flop_share_of_conv_and_linear() -> None:
    conv = nn.Conv2d(1, 4, 3, padding=1)  # 4 x 8 x 8 outputs x 9 MACs = 2304
    lin = nn.Linear(256, 9)  # 9 x 256 = 2304
    model = nn.Sequential(conv, nn.Flatten(), lin)
    assert linear_flop_share(model, lambda: model(torch.zeros(1, 1, 8, 8))) == 0.5


def test_a_served_float32_model_can_be_copied_for_dynamic_quantisation() -> None:
    """The loader packs a float32 model's weights into oneDNN's opaque layout; `genloom eval`'s dynamic
    quantisation copies the model, which opaque tensors refuse: its layers are made plain first."""
    import torch
    from torch import nn

    from infra.evaluation.quant import _plain, quantise_linear
    from infra.models.invariant import pack_float32

    model = nn.Sequential(nn.Embedding(10, 64), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10, bias=False))
    model[3].weight = model[0].weight  # tied, as SmolLM2's output head: the packed head keeps its plain weight
    model.get_output_embeddings = lambda: model[3]
    x = torch.tensor([1, 4, 7])
    want = model(x)
    if not pack_float32(model):
        return  # no oneDNN here: nothing packed, nothing to undo
    assert any(getattr(m, "packed", None) is not None for m in model.modules())
    quantised = quantise_linear(_plain(model))
    assert all(type(m) is nn.Linear for m in (model[1], model[3]))
    assert torch.allclose(model(x), want, atol=1e-5)
    assert (quantised(x) - want).abs().max() < 0.05 * want.abs().max()  # int8 activations: close, not equal
