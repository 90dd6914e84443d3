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
