"""Settings of the served models (``GENLOOM_TEXT_*``, ``GENLOOM_IMAGE_*``, ``GENLOOM_VIDEO_*``,
``GENLOOM_SPEECH_*``): read by the workers that load them, and by the gateway and the CLI, which
learn from them what this deployment serves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.enums import ImageScheduler


#: how an engine server's requests are salted by tenant (GENLOOM_TEXT_ENGINE_CACHE_SALT)
CacheSaltMode = Literal["auto", "tenant", "off"]


class TextSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_TEXT_", extra="ignore", frozen=True)

    model: str | None = Field(
        default=None, description="HF model id or folder; unset serves SmolLM2-135M-Instruct from its wheel."
    )
    revision: str | None = Field(default=None, description="Model revision (branch, tag or commit).")
    dtype: str = Field(default="auto", description="auto (bfloat16 on a GPU and on a CPU with native bf16, AVX512-BF16 or AMX; int8 on other CPUs with AVX512F, or AVX2 and FMA, where a C compiler builds its kernel; else float32), float32, bfloat16, float16, int8 (CPU: int8 weights with a float32 scale per output row, float32 activations, a C kernel built once with the machine's AVX512F or AVX2; a quarter of float32's weight bytes per decode step). On CPU a reduced precision decodes batch-invariantly (bf16 Linear layers on packed weights, a prefill's products in tiles of one size on AMX CPUs, decode attention row by row, prefill attention accumulated in float64).")
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N.")
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "genloom" / "models", description="Dequantised model cache."
    )
    served_name: str = Field(
        default="smollm2-135m-instruct", description="Model name clients ask for (`model` in requests)."
    )
    max_batch_size: int = Field(default=16, ge=1, description="Sequences decoded together per step.")
    max_batch_tokens: int = Field(default=8192, ge=2, description="Token budget of the running batch.")
    engine_process: bool = Field(
        default=True,
        description="Run the engine in a child process, so its steps do not share the GIL with the worker's"
        " Kafka I/O; false runs it on a thread of the worker.",
    )
    max_prefill_tokens: int = Field(
        default=512, ge=1, description="Prompt tokens prefilled per step; bounds how long new arrivals stall running ones."
    )
    prefill_threads: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        default="auto",
        description="torch threads for a lone stream's prompt in the built-in engine (nothing decoding, one prompt"
        " waiting, and no more than one request at a time for the last 2 s: the first token of a request at a quiet"
        " engine), like llama.cpp's --threads-batch; auto: every core the worker may run on; 0: the engine's own"
        " count (GENLOOM_WORKER_TORCH_THREADS). Used only where a check at start finds it gives the tokens of a"
        " prefill on the engine's own count. Under the whole `genloom up` stack on 2 cores it took about 10 ms off"
        " the time to first token at one stream; several streams keep the engine's own count, since switching"
        " for the first of each wave of arrivals added 50 ms at four (docs/benchmarks.md).",
    )
    prefill_tiles: bool = Field(
        default=True,
        description="On a CPU whose bf16 products of more than 32 rows order their sums by their size (AMX), multiply"
        " a prefill in products of exactly 48 rows, the last padded, where a check at load finds them exact: a"
        " 42-token prompt prefilled in 0.85x the time, a 9-token one in 1.23x (docs/benchmarks.md); false: pieces"
        " of up to 32 rows. No effect elsewhere.",
    )
    float32_packed: bool = Field(
        default=True,
        description="A float32 model on CPU (one without native bf16) keeps, besides each Linear's plain weight (one"
        " stream's decode step and prefills, where the BLAS is fastest), a copy packed into oneDNN's layout for"
        " products of 2 to 32 rows (decode steps of several streams): a decode step of 2, 4 and 8 streams took"
        " 0.81x, 0.92x and 0.95x the time on an AVX2 EPYC, 16 about the same (docs/benchmarks.md), for a second"
        " copy of those weights (427 MB on the default model); false packs only the output head.",
    )
    prefix_cache_tokens: int = Field(
        default=2048, ge=0,
        description="Prompt-head tokens whose keys and values the built-in engine keeps for later prompts that"
        " start the same way (the chat template's system turn, fixed instructions), shared only within a tenant;"
        " 0 turns the prefix cache off.",
    )
    engine_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible engine server (vLLM, SGLang, TGI, llama.cpp, transformers"
        " serve) to generate with instead of the built-in engine, e.g. http://vllm:8000.",
    )
    engine_model: str | None = Field(
        default=None, description="The model name to ask the engine server for; unset: GENLOOM_TEXT_SERVED_NAME.")
    engine_api_key: SecretStr | None = Field(default=None, description="Bearer key of the engine server, if any.")
    engine_max_concurrency: int = Field(
        default=64, ge=1, description="Requests streamed to the engine server at once (its connections).")
    engine_tokenizer: str | None = Field(
        default=None,
        description="A local tokenizer folder of the served model, for exact context checks before a job starts;"
        " unset: the engine server enforces its context and its refusal ends the job.",
    )
    engine_cache_salt: CacheSaltMode = Field(
        default="auto",
        description="Salt each upstream request's prefix cache by tenant (vLLM's cache_salt), so prompt heads are"
        " reused only within a tenant: auto when the server's model card says vLLM, tenant always (for a server"
        " that takes the field), off never (servers that refuse unknown fields, as transformers serve does).",
    )


class SpeechSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_SPEECH_", extra="ignore", frozen=True)

    voice_dir: Path | None = Field(default=None, description="Folder of extra piper voices (.onnx + .onnx.json).")
    threads: int = Field(default=1, ge=0, description="onnxruntime threads per synthesis; 0 = its default.")
    max_concurrency: int = Field(default=2, ge=1, description="Speech jobs in flight per worker.")
    voice_map: dict[str, str] = Field(
        default_factory=dict,
        description="JSON: OpenAI voice name -> installed voice (e.g. {\"onyx\": \"amy\"}); OpenAI voices not "
        "named are spoken by the shipped voice.")


class ImageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_IMAGE_", extra="ignore", frozen=True)

    model: str | None = Field(
        default=None,
        description="Diffusers model id (from the local hub cache) or folder; unset serves the digit model "
        "trained here (models/digits-image, `genloom train image`).",
    )
    device: str | None = Field(default=None, description="cpu, cuda or cuda:N; unset picks CUDA when present.")
    max_batch_size: int = Field(default=4, ge=1, description="Most jobs of one shape in one pipeline call.")
    max_wait_ms: int = Field(
        default=50, ge=0, description="How long a job waits for companions of its shape before its batch runs."
    )
    width: int | None = Field(default=None, ge=8, description="Default width; unset = the model's native size.")
    height: int | None = Field(default=None, ge=8, description="Default height; unset = the model's native size.")
    steps: int | None = Field(
        default=None, ge=1, description="Default denoising steps; unset: the model's own (25 for the digit "
        "model), else 30.")
    guidance: float | None = Field(
        default=None, ge=0.0, description="Default classifier-free guidance scale; unset: the model's own "
        "(2.0 for the digit model, which collapses above 5), else 7.0.")
    scheduler: ImageScheduler | None = Field(
        default=None, description="Default scheduler; unset: the model's own (ddim for the digit model), "
        "else dpm-solver.")
    max_side: int = Field(default=2048, ge=8, description="Largest width or height served (invalid_size above).")
    max_steps: int = Field(default=100, ge=1, description="Most denoising steps a job may ask for.")
    max_n: int = Field(default=8, ge=1, description="Most images per job.")


class VideoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_VIDEO_", extra="ignore", frozen=True)

    model: str | None = Field(
        default=None,
        description="Diffusers model id (from the local hub cache) or folder; unset serves the video digit "
        "model trained here (models/digits-video, `genloom train video`).",
    )
    device: str | None = Field(default=None, description="cpu, cuda or cuda:N; unset picks CUDA when present.")
    max_concurrency: int = Field(default=1, ge=1, description="Video jobs in flight per worker.")
    width: int | None = Field(default=None, ge=8, description="Default width; unset = the model's native size.")
    height: int | None = Field(default=None, ge=8, description="Default height; unset = the model's native size.")
    frames: int | None = Field(default=None, ge=1, description="Default number of frames; unset: the model's "
                               "own (8 for the digit model), else 16.")
    steps: int | None = Field(default=None, ge=1, description="Default denoising steps; unset: the model's own "
                              "(25 for the digit model), else 25.")
    guidance: float | None = Field(default=None, ge=0.0, description="Default classifier-free guidance scale; "
                                   "unset: the model's own (2.0 for the digit model), else 7.5.")
    max_side: int = Field(default=1024, ge=8, description="Largest width or height served (invalid_size above).")
    max_steps: int = Field(default=100, ge=1, description="Most denoising steps a job may ask for.")
    max_frames: int = Field(default=32, ge=1, description="Most frames a job may ask for.")
    max_fps: int = Field(default=60, ge=1, description="Highest frame rate a job may ask for.")
