"""int8 weights for a float32 text model on CPU (``GENLOOM_TEXT_DTYPE=int8``).

On a CPU without native bf16 products the served model runs in float32, and a decode step of a
small model is bound by reading its weights: SmolLM2-135M's Linear layers are 538 MB in float32, read
once per step whatever the batch. Stored as int8 with one float32 scale per output row (symmetric,
``scale = max|w| / 127``) they are a quarter of that, and ``kernels/int8_linear.c`` multiplies float32
activations by them directly, widening each weight to float32 in registers, so activations keep full
precision (unlike ``torch.ao`` dynamic quantisation, whose per-tensor int8 activations cost this model
much perplexity, docs/eval). The kernel is plain C with AVX512F or AVX2 intrinsics, built once per
machine with the machine's own instructions (``cc -O3 -march=native``) into the model cache
(``GENLOOM_CACHE_DIR``) and loaded with ctypes (which releases the GIL during the call). A large product
(a prefill, the output head) is split by output rows over :func:`torch.get_num_threads` threads of
OpenMP: torch's own runtime (its ``libgomp.so.1`` is loaded first, so the kernel's reference resolves to
it), whose threads a second pool would fight for the cores.

Every output of a row is summed the same way whatever else is in the batch (see the C file), so a
greedy stream decodes the same tokens alone and batched, and a prompt's head from the prefix cache has
the bits of the same head prefilled in a longer prompt. The input embedding stays float32 (a lookup
reads one row); the output head tied to it gets an int8 copy.

``torch.ops.aten._weight_int8pack_mm``, PyTorch's own float x int8 product, took 2.6x float32's time for
one row and 23x for sixteen on an Intel Xeon (AVX512, torch 2.13), so it is not used.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "kernels" / "int8_linear.c"
#: the compiler command (``CC``) and its flags: the machine's own vector instructions, and no multiply-add the
#: C does not write (fused where the compiler chose, a row's scale and bias would round by how the rows were blocked)
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC", "-Wall")
#: multiply-adds below which a product runs on the calling thread alone: a decode step's Linear layers of a
#: few rows (under 1M each on the default model) stay on one thread, the output head and prefills split
#: (not tuned: a one-stream decode step took about the same time on one thread and on two)
SPLIT_MACS = 4_000_000


class Int8Unavailable(RuntimeError):
    """The int8 kernel cannot be built or run on this machine; the message says what to do."""


def kernel_dir() -> Path:
    """Where built kernels are kept: ``kernels`` in the model cache (``GENLOOM_CACHE_DIR``, ``~/.cache/genloom``)."""
    from infra.settings.core import StorageSettings

    return StorageSettings().cache_dir / "kernels"


#: kernels built ahead for CPUs of a level (`python -m infra.models.int8 prebuild`, the container image's
#: builder stage), loaded where this machine cannot build its own (a runtime image has no compiler)
PREBUILT = Path(__file__).resolve().parent / "kernels" / "prebuilt"
#: the x86-64 levels prebuilt, best first, with the CPU flags each needs (gcc's -march=x86-64-v3 and -v4)
LEVELS = (("x86-64-v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2", "fma", "bmi1", "bmi2",
                         "f16c", "movbe", "abm"}),
          ("x86-64-v3", {"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm"}))


def _cpu_flags() -> str:
    """This CPU's feature flags (a build for one CPU may not run on another that shares the home)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return os.uname().machine


def _source_key(*parts: str) -> str:
    return hashlib.sha256(SOURCE.read_bytes() + " ".join(parts).encode()).hexdigest()[:16]


def build(target: Path, flags: tuple[str, ...] = FLAGS) -> Path:
    """Compile the kernel into ``target`` (atomically: processes building at once each load a whole file).
    Raises :class:`Int8Unavailable` with what to do."""
    compiler = os.environ.get("CC", "cc")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so")
    os.close(fd)
    try:
        done = subprocess.run([compiler, *flags, "-o", tmp, str(SOURCE)], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        os.unlink(tmp)
        raise Int8Unavailable(f"int8 weights need a C compiler to build their kernel ({compiler}: {exc}); "
                              "install gcc or set CC, or set GENLOOM_TEXT_DTYPE=float32") from exc
    if done.returncode:
        os.unlink(tmp)
        raise Int8Unavailable(f"the int8 kernel did not build here (it needs an x86-64 CPU with AVX2 and FMA, or "
                              f"AVX512F); set GENLOOM_TEXT_DTYPE=float32. {compiler} said: {done.stderr.strip()[-500:]}")
    os.replace(tmp, target)
    return target


def prebuilt_name(level: str) -> str:
    return f"int8_linear-{level}-{_source_key(level, *FLAGS)}.so"


def prebuild(folder: Path = PREBUILT) -> list[Path]:
    """Build the kernel for every x86-64 level of :data:`LEVELS` into ``folder``, for machines that run it
    without a compiler."""
    portable = tuple(f for f in FLAGS if f != "-march=native")
    return [build(folder / prebuilt_name(level), (f"-march={level}", *portable)) for level, _ in LEVELS]


def _prebuilt() -> Path | None:
    """The best prebuilt kernel of this source that this CPU runs, if any."""
    flags = set(_cpu_flags().split())
    for level, needs in LEVELS:
        path = PREBUILT / prebuilt_name(level)
        if needs <= flags and path.exists():
            return path
    return None


@functools.cache
def _library() -> ctypes.CDLL:
    target = kernel_dir() / f"int8_linear-{_source_key(os.environ.get('CC', 'cc'), *FLAGS, _cpu_flags())}.so"
    if not target.exists():
        try:
            build(target)
            log.info("built the int8 kernel into %s", target)
        except Int8Unavailable:
            target = _prebuilt()
            if target is None:
                raise
            log.info("no kernel could be built here; loading the prebuilt %s", target)
    lib = ctypes.CDLL(str(target))
    lib.gl_int8_linear.restype = ctypes.c_int
    lib.gl_int8_linear.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                   ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    lib.gl_int8_lanes.restype = ctypes.c_int
    return lib


def lanes() -> int:
    """The kernel's vector width in floats (16 with AVX512F, 8 with AVX2); builds it if needed.
    Raises :class:`Int8Unavailable`."""
    return int(_library().gl_int8_lanes())


def available() -> bool:
    """Whether the int8 kernel builds and loads here."""
    try:
        lanes()
    except Int8Unavailable:
        return False
    return True


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` [N, K] as int8 [N, K] and one float32 scale per row (symmetric, ``max|w| / 127``)."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row stays zero
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.contiguous(), scale.contiguous()


class Int8Linear(nn.Module):
    """A Linear layer whose weight is int8 with a float32 scale per output row, applied to float32
    inputs by the int8 kernel (see the module docstring)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        if weight.shape[1] % lanes():
            raise Int8Unavailable(f"int8 weights need input widths that are a multiple of {lanes()}; "
                                  f"this layer's is {weight.shape[1]}; set GENLOOM_TEXT_DTYPE=float32")
        super().__init__()
        self.out_features, self.in_features = weight.shape
        q, scale = quantize(weight)
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())
        self._call = _library().gl_int8_linear

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"

    def dequantized(self) -> torch.Tensor:
        """The float32 weight the int8 one stands for."""
        return self.qweight.float() * self.scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, n = self.in_features, self.out_features
        rows = x.numel() // k
        flat = x.reshape(rows, k).float().contiguous()
        out = torch.empty(rows, n, dtype=torch.float32, device=x.device)
        threads = torch.get_num_threads() if rows * n * k >= SPLIT_MACS else 1
        self._call(flat.data_ptr(), rows, k, self.qweight.data_ptr(), self.scale.data_ptr(),
                   None if self.bias is None else self.bias.data_ptr(), out.data_ptr(), n, threads)
        return out.reshape(*x.shape[:-1], n).to(x.dtype)


def quantize_model(model: nn.Module) -> int:
    """Replace every ``nn.Linear`` of the float32 ``model`` (on CPU) by an :class:`Int8Linear`, in place;
    a weight no other module shares is released (the embedding a tied output head reads keeps its
    float32 copy). Returns how many were replaced. Raises :class:`Int8Unavailable`."""
    width = lanes()
    targets = [(module, name, child) for module in model.modules() for name, child in module.named_children()
               if isinstance(child, nn.Linear) and child.weight.device.type == "cpu"]
    odd = sorted({child.in_features for _, _, child in targets if child.in_features % width})
    if odd:  # refused before any layer changes: never half a model in int8
        raise Int8Unavailable(f"int8 weights need input widths that are a multiple of {width}; this model has "
                              f"{odd}; set GENLOOM_TEXT_DTYPE=float32")
    with torch.no_grad():
        for module, name, child in targets:
            setattr(module, name, Int8Linear(child.weight, child.bias))
    return len(targets)


if __name__ == "__main__":  # python -m infra.models.int8 prebuild [FOLDER]
    import sys

    if len(sys.argv) < 2 or sys.argv[1] != "prebuild":
        raise SystemExit("usage: python -m infra.models.int8 prebuild [FOLDER]")
    for built in prebuild(Path(sys.argv[2]) if len(sys.argv) > 2 else PREBUILT):
        print(built)
