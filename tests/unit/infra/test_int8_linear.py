"""The int8 kernel (infra/models/int8.py): its products, their bits alone and batched, the build."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infra.models import int8

pytestmark = pytest.mark.skipif(not int8.available(), reason="no C compiler or no AVX2/AVX512 here")


def layer(n: int = 200, k: int = 576, *, bias: bool = True, seed: int = 0) -> int8.Int8Linear:
    generator = torch.Generator().manual_seed(seed)
    linear = nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(n, k, generator=generator) * 0.05)
        if bias:
            linear.bias.copy_(torch.randn(n, generator=generator))
    return int8.Int8Linear(linear.weight, linear.bias)


def test_quantize_keeps_each_weight_within_half_a_step_of_its_row_and_an_empty_row_empty() -> None:
    weight = torch.randn(6, 64) * torch.tensor([1e-3, 0.1, 1, 10, 100, 0])[:, None]
    q, scale = int8.quantize(weight)
    assert q.dtype == torch.int8 and scale.dtype == torch.float32 and q.shape == weight.shape
    assert int(q.abs().max()) == 127  # the largest weight of a row meets the end of the range
    error = (q.float() * scale[:, None] - weight).abs()
    assert torch.all(error <= scale[:, None] / 2 + 1e-6 * weight.abs())
    assert torch.all(q[5] == 0)


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 17, 64, 65, 130])
def test_a_product_is_the_dequantized_weights_product(rows: int) -> None:
    lin = layer(n=203)  # output rows not a multiple of the register block
    x = torch.randn(rows, lin.in_features)
    want = nn.functional.linear(x, lin.dequantized(), lin.bias)
    got = lin(x)
    assert got.shape == (rows, 203) and got.dtype == torch.float32
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bias", [False, True])
def test_every_row_has_its_bits_alone_in_any_batch_and_at_any_position(bias: bool) -> None:
    """What keeps greedy streams alike alone and batched: a row's outputs do not depend on the rows
    with it, their number (register blocks of four, the remainder, chunks of 64) or its place."""
    lin = layer(n=103, k=1536, bias=bias)
    x = torch.randn(150, 1536)
    alone = torch.cat([lin(x[i : i + 1]) for i in range(len(x))])
    assert torch.equal(lin(x), alone)
    for start, rows in ((3, 2), (1, 7), (5, 64), (66, 80)):
        assert torch.equal(lin(x[start : start + rows]), alone[start : start + rows])
    assert torch.equal(lin(x.view(10, 15, 1536)), alone.view(10, 15, -1))  # a [batch, tokens, width] input


def test_a_large_product_split_between_threads_has_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    lin = layer(n=1003)
    x = torch.randn(40, lin.in_features)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    one = lin(x)
    calls: list[int] = []
    kernel = lin._call
    monkeypatch.setattr(lin, "_call", lambda *a: calls.append(a[-1]) or kernel(*a))
    torch.set_num_threads(3)
    try:
        assert torch.equal(lin(x), one)
        assert torch.equal(lin(x[:1]), one[:1])
    finally:
        torch.set_num_threads(before)
    assert calls == [3, 1]  # a decode step's small product stays on the calling thread


def test_the_kernel_shares_torchs_openmp_runtime() -> None:
    """The kernel's libgomp.so.1 is torch's, already loaded, not a second runtime whose pool would spin
    against torch's for the cores (other wheels' own copies carry other names and serve only them)."""
    from pathlib import Path

    int8.lanes()
    loaded = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
              if line.endswith("/libgomp.so.1")}
    assert loaded == {str(Path(torch.__file__).parent / "lib" / "libgomp.so.1")}


def test_a_layer_whose_width_the_kernel_cannot_take_is_refused_with_what_to_do() -> None:
    with pytest.raises(int8.Int8Unavailable, match="multiple of"):
        int8.Int8Linear(torch.randn(8, int8.lanes() + 1), None)


def test_the_kernel_is_built_once_per_machine_and_a_failed_build_says_what_to_do(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENLOOM_CACHE_DIR", str(tmp_path))
    tmp_path = tmp_path / "kernels"
    int8._library.cache_clear()
    try:
        assert int8.lanes() in (8, 16)
        built = list(tmp_path.glob("int8_linear-*.so"))
        assert len(built) == 1
        int8._library.cache_clear()
        int8.lanes()  # loads the built file, does not build again
        assert list(tmp_path.glob("*")) == built
        int8._library.cache_clear()
        monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
        monkeypatch.setattr(int8, "SOURCE", tmp_path / "other.c")
        (tmp_path / "other.c").write_text("/* another source: another key */")
        with pytest.raises(int8.Int8Unavailable, match="GENLOOM_TEXT_DTYPE=float32"):
            int8.lanes()
        assert not int8.available()
        assert list(tmp_path.glob("*.so")) == built  # nothing half-built left behind
    finally:
        int8._library.cache_clear()


def test_quantize_model_replaces_every_linear_and_keeps_a_tied_embedding() -> None:
    model = nn.Sequential(nn.Embedding(10, 32), nn.Linear(32, 48), nn.ReLU(), nn.Linear(48, 10, bias=False))
    model[3].weight = model[0].weight  # tied, as SmolLM2's output head
    assert int8.quantize_model(model) == 2
    assert [type(m) for m in model] == [nn.Embedding, int8.Int8Linear, nn.ReLU, int8.Int8Linear]
    assert model[0].weight.dtype == torch.float32 and model[3].qweight.dtype == torch.int8
    assert torch.allclose(model[3].dequantized(), model[0].weight, atol=float(model[0].weight.detach().abs().max()) / 254 + 1e-7)


def test_the_avx2_build_gives_the_same_products(tmp_path) -> None:
    """CPUs without AVX512F (an AMD Zen 3) run the eight-lane kernel: built here with AVX2 alone."""
    import ctypes
    import subprocess

    target = tmp_path / "avx2.so"
    flags = [f for f in int8.FLAGS if f != "-march=native"]
    subprocess.run(["cc", "-mavx2", "-mfma", *flags, "-o", str(target), str(int8.SOURCE)], check=True)
    lib = ctypes.CDLL(str(target))
    assert lib.gl_int8_lanes() == 8
    lib.gl_int8_linear.argtypes = int8._library().gl_int8_linear.argtypes
    for seed in range(8):  # a row's scale and bias fused into a multiply-add in some blocks failed 13 of 20 seeds
        lin = layer(n=37, k=80, seed=seed)
        lin._call = lib.gl_int8_linear
        x = torch.randn(11, 80)  # past WIDEN_ROWS: AVX2's blocks of 3 rows from the widened weights, and 2 left over
        got = lin(x)
        assert torch.allclose(got, nn.functional.linear(x, lin.dequantized(), lin.bias), rtol=1e-4, atol=1e-4)
        assert torch.equal(torch.cat([lin(x[i : i + 1]) for i in range(11)]), got)


def test_inputs_wider_than_the_widening_buffer_multiply_in_registers_with_the_same_bits() -> None:
    """Past MAX_K (8192) input columns a prefill's weights are not widened into the stack buffer: many rows
    then take the decode steps' path, which must still be the product, every row with its bits alone."""
    lin = layer(n=6, k=8192 + 16)
    x = torch.randn(20, 8192 + 16)
    got = lin(x)
    assert torch.allclose(got, nn.functional.linear(x, lin.dequantized(), lin.bias), rtol=1e-4, atol=1e-3)
    assert torch.equal(torch.cat([lin(x[i : i + 1]) for i in range(20)]), got)


def test_a_machine_that_cannot_build_loads_the_best_prebuilt_kernel_its_cpu_runs(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime image has no compiler: its builder stage prebuilt the kernel for x86-64-v3 and -v4
    (`python -m infra.models.int8 prebuild`), and the best level this CPU has is loaded."""
    prebuilt = tmp_path / "prebuilt"
    assert len(int8.prebuild(prebuilt)) == 2
    assert sorted(p.name[: len("int8_linear-x86-64-v4")] for p in prebuilt.iterdir()) == [
        "int8_linear-x86-64-v3", "int8_linear-x86-64-v4"]
    monkeypatch.setattr(int8, "PREBUILT", prebuilt)
    monkeypatch.setenv("GENLOOM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(tmp_path / "no-compiler"))
    flags = set(int8._cpu_flags().split())
    int8._library.cache_clear()
    try:
        want = 16 if int8.LEVELS[0][1] <= flags else 8
        assert int8.lanes() == want  # from the prebuilt file: nothing was built into the cache
        assert not (tmp_path / "cache" / "kernels").exists() or not list((tmp_path / "cache" / "kernels").glob("*.so"))
        lin = layer(n=40, k=576)
        x = torch.randn(5, 576)
        assert torch.allclose(lin(x), nn.functional.linear(x, lin.dequantized(), lin.bias), rtol=1e-4, atol=1e-4)
        int8._library.cache_clear()
        monkeypatch.setattr(int8, "LEVELS", (("x86-64-v9", {"no-such-flag"}),))
        with pytest.raises(int8.Int8Unavailable, match="C compiler"):  # nothing this CPU runs: the build's error
            int8.lanes()
    finally:
        int8._library.cache_clear()
