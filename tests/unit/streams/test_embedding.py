"""The embedding stage: what text each modality embeds, the vector's wire form, and the stage on the
real all-MiniLM-L6-v2 (slow: it loads the model)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from schemas import PromptEmbedding, parse_request
from streams.embedding.logic import SHORT_TURN_CHARS, chat_text, pack, prompt_text, unpack
from streams.stages import Failure, Item


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return v / np.linalg.norm(v)


def chat(*messages: tuple[str, str]):
    return parse_request({"modality": "text",
                          "params": {"messages": [{"role": r, "content": c} for r, c in messages]}})


def test_chat_embeds_the_last_user_turn_without_system_or_assistant_text():
    request = chat(("system", "You are a pirate."), ("user", "Tell me how tides work on the open ocean please"),
                   ("assistant", "Arr"), ("user", "Explain in some detail how the moon causes the tides in the oceans of Earth"))
    assert chat_text(request) == "Explain in some detail how the moon causes the tides in the oceans of Earth"


def test_a_short_follow_up_gets_the_earlier_user_turn_as_context_after_it():
    request = chat(("user", "What is the weather like in Lisbon in spring?"), ("assistant", "Mild."),
                   ("user", "And in Oslo?"))
    assert len("And in Oslo?") < SHORT_TURN_CHARS
    assert chat_text(request) == "And in Oslo?\nWhat is the weather like in Lisbon in spring?"


def test_a_chat_without_user_text_embeds_its_last_message():
    assert chat_text(chat(("system", "Say hello"), ("user", "  "))) == "Say hello"


def test_media_and_speech_prompts():
    image = parse_request({"modality": "image", "params": {"prompt": "a red fox", "negative_prompt": "blur"}})
    video = parse_request({"modality": "video", "params": {"prompt": "waves"}})
    speech = parse_request({"modality": "speech", "params": {"input": "Good morning"}})
    assert prompt_text(image) == "a red fox\nwithout: blur"
    assert prompt_text(video) == "waves"
    assert prompt_text(speech) == "Good morning"


def test_pack_and_unpack_keep_the_vector_within_half_precision():
    rng = np.random.default_rng(0)
    v = rng.normal(size=384).astype(np.float32)
    v /= np.linalg.norm(v)
    packed = pack(v, "m")
    assert packed.dims == 384 and len(packed.f16) == 1024
    back = unpack(packed)
    assert abs(float(back @ v) - 1.0) < 1e-3 and abs(float(np.linalg.norm(back)) - 1.0) < 1e-5
    request = parse_request({"modality": "speech", "params": {"input": "x"}, "embedding": packed.model_dump()})
    assert request.embedding == packed


def test_an_embedding_of_the_wrong_length_is_refused():
    with pytest.raises(ValidationError):
        PromptEmbedding(model="m", dims=384, f16="AAAA")


@pytest.mark.slow
async def test_stage_embeds_a_batch_in_one_call_and_skips_ended_items():
    from infra.models.embedder import load_embedder
    from schemas.enums import ErrorCode
    from streams.embedding.stage import EmbeddingStage

    embedder = load_embedder()
    assert load_embedder() is embedder  # once per process
    items = [Item(chat(("user", "How do I bake sourdough bread at home?")), b"k"),
             Item(chat(("user", "What is the recipe for homemade sourdough bread?")), b"k"),
             Item(chat(("user", "Who won the football world cup in 1998?")), b"k"),
             Item(chat(("user", "x")), b"k", end=Failure(ErrorCode.INVALID_REQUEST, "no"))]
    await EmbeddingStage(embedder).run(items)
    a, b, c, ended = (i.embedding for i in items)
    assert ended is None and items[3].request.embedding is None
    assert a.dtype == np.float32 and a.shape == (384,) and abs(float(np.linalg.norm(a)) - 1) < 1e-4
    assert float(a @ b) > float(a @ c) + 0.3  # paraphrases are close, other topics far
    assert np.allclose(unpack(items[0].request.embedding), a, atol=2e-3)


async def test_a_failing_model_leaves_the_jobs_pending_and_degraded():
    from infra.models.embedder import Embedder
    from streams.embedding.stage import EmbeddingStage

    class Broken(Embedder):
        def __init__(self) -> None:
            self.name, self.dims, self.max_chars = "broken", 384, 100

        def encode(self, texts, batch_size=64):
            raise RuntimeError("out of memory")

    items = [Item(chat(("user", "hi")), b"k")]
    await EmbeddingStage(Broken()).run(items)
    assert items[0].pending and items[0].embedding is None and items[0].degraded == ["embedding"]


@pytest.mark.slow
async def test_bad_input_is_embedded_never_stuck():
    """Any script, emoji, a prompt at the contract's length limit, control characters and NULs."""
    from infra.models.embedder import load_embedder
    from schemas.requests import MAX_TEXT_CHARS
    from streams.embedding.stage import EmbeddingStage

    prompts = ["東京の人口は何人ですか？", "مرحبا كيف حالك", "🙂🚀🔥" * 50, "x" * MAX_TEXT_CHARS,
               "nul\x00and\x01control\x7f\ufffd", "ok", "\u200b\u200b real text after zero-width spaces"]
    items = [Item(chat(("user", p)), b"k") for p in prompts]
    await EmbeddingStage(load_embedder(), batch_size=4).run(items)
    for item in items:
        assert item.pending and item.degraded == []
        assert item.embedding.shape == (384,) and np.isfinite(item.embedding).all()
        assert abs(float(np.linalg.norm(item.embedding)) - 1) < 1e-3


@pytest.mark.slow
def test_build_stage_reads_its_settings_and_shares_the_embedder():
    from infra.models.embedder import embedder_for, load_embedder
    from infra.settings.streams import EmbeddingSettings
    from streams.embedding.stage import build_stage

    stage = build_stage(EmbeddingSettings(batch_size=8))
    assert stage.name == "embedding" and stage._batch_size == 8
    assert stage._embedder is embedder_for(EmbeddingSettings())
    assert build_stage(EmbeddingSettings(runtime="torch"))._embedder is load_embedder()


@pytest.mark.slow
def test_onnxruntime_gives_torch_s_vectors_and_is_exported_once():
    """The default runtime on CPU: the same model exported to ONNX; every vector within 1e-4 of torch
    float32's (cosine), bad input included, and the export reused (one file, one object per process)."""
    from infra.models.embedder import OnnxEmbedder, load_embedder

    onnx = load_embedder(runtime="onnxruntime")
    assert isinstance(onnx, OnnxEmbedder) and load_embedder(runtime="onnxruntime") is onnx
    reference = load_embedder(dtype="float32", runtime="torch")
    texts = ["How do I bake sourdough bread at home?", "ok", "東京の人口は何人ですか？", "🙂🚀" * 40,
             "word " * 600, "nul\x00and\x01control", "A longer sentence about the weather in the Alps in May."]
    got, want = onnx.encode(texts, batch_size=3), reference.encode(texts)
    assert got.shape == want.shape == (len(texts), 384)
    assert float(np.min(np.sum(got * want, axis=1))) > 1 - 1e-4
    assert onnx.count_tokens(["hello world"]) == reference.count_tokens(["hello world"])
    assert onnx.max_tokens == reference.max_tokens == 256


@pytest.mark.slow
def test_bfloat16_weights_give_the_float32_vectors_within_the_cache_s_tolerance():
    from infra.models.embedder import EmbedderLoadError, load_embedder, resolve_dtype

    texts = ["How do I bake sourdough bread at home?", "What is the capital city of France?", "x"]
    full, half = load_embedder(dtype="float32"), load_embedder(dtype="bfloat16")
    assert full is not half and load_embedder(dtype="bfloat16") is half
    a, b = full.encode(texts), half.encode(texts)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-4)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.999
    assert resolve_dtype("auto", "cuda") == "float32" and resolve_dtype("float32", "cpu") == "float32"
    with pytest.raises(EmbedderLoadError, match="unknown embedding dtype"):
        load_embedder(dtype="int4")


async def test_a_prompt_asked_again_is_not_embedded_again():
    from infra.models.embedder import Embedder
    from streams.embedding.stage import EmbeddingStage

    class Counting(Embedder):
        """A stand-in model: one vector per distinct text, and a record of what it was asked."""

        def __init__(self) -> None:
            self.name, self.dims, self.max_chars, self.asked = "counting", 384, 100, []

        def encode(self, texts, batch_size=64):
            self.asked.append(list(texts))
            return np.stack([vec(sum(map(ord, t))) for t in texts])

    model = Counting()
    stage = EmbeddingStage(model, recent=2)
    first = [Item(chat(("user", q)), b"k") for q in ("What is a cat?", "What is a dog?", "What is a cat?")]
    await stage.run(first)
    assert model.asked == [["What is a cat?", "What is a dog?"]]  # a repeat within the batch: once
    assert np.array_equal(first[0].embedding, first[2].embedding) and first[0].request.embedding is not None
    again = [Item(chat(("user", "What is a dog?")), b"k"), Item(chat(("user", "What is a cow?")), b"k")]
    await stage.run(again)
    assert model.asked[1:] == [["What is a cow?"]]
    assert np.array_equal(again[0].embedding, first[1].embedding)
    await stage.run([Item(chat(("user", "What is a cat?")), b"k")])  # fell out: only the last 2 are kept
    assert model.asked[2:] == [["What is a cat?"]]
    off = EmbeddingStage(model, recent=0)
    await off.run([Item(chat(("user", "What is a cow?")), b"k")])
    await off.run([Item(chat(("user", "What is a cow?")), b"k")])
    assert model.asked[3:] == [["What is a cow?"], ["What is a cow?"]]


async def test_only_jobs_a_later_stage_reads_are_embedded():
    """A sampled chat of a user without memory is not embedded when every later stage says it does not
    read its vector; a chain whose later stage does not say (or that has none) embeds every job."""
    from streams.cache.logic import TenantPolicy, eligible
    from streams.embedding.stage import EmbeddingStage
    from streams.prepare.chain import wire_embedding

    class Counting:
        name, dims, max_chars = "counting", 3, 100

        def __init__(self) -> None:
            self.texts: list[str] = []

        def encode(self, texts, batch_size=64):
            self.texts += texts
            return np.tile(np.array([1.0, 0.0, 0.0], dtype=np.float32), (len(texts), 1))

    class CacheLike:
        name = "cache"

        async def run(self, items):
            return None

        def uses_embedding(self, item):
            return eligible(item.request, TenantPolicy())

    class Silent:
        name = "other"

        async def run(self, items):
            return None

    def jobs():
        greedy = parse_request({"modality": "text", "tenant": "t", "params": {
            "messages": [{"role": "user", "content": "greedy question"}], "temperature": 0}})
        sampled = parse_request({"modality": "text", "tenant": "t", "params": {
            "messages": [{"role": "user", "content": "sampled question"}], "temperature": 0.8}})
        return [Item(greedy, b"k"), Item(sampled, b"k")]

    model = Counting()
    stage, _ = wire_embedding([EmbeddingStage(model), CacheLike()])
    items = jobs()
    await stage.run(items)
    assert model.texts == ["greedy question"]
    assert items[0].embedding is not None and items[1].embedding is None and items[1].degraded == []
    for chain in ([EmbeddingStage(model), CacheLike(), Silent()], [EmbeddingStage(model)]):
        model.texts = []
        await wire_embedding(chain)[0].run(jobs())
        assert sorted(model.texts) == ["greedy question", "sampled question"]
