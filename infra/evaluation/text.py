"""Text section of `genloom eval`: the served text model (SmolLM2-135M-Instruct, as
`infra.models.loader` loads it) on text it is scored against.

- Perplexity on two held-out sets: the prose of scikit-learn's dataset descriptions
  (`sklearn/datasets/descr/*.rst`, which ship in the scikit-learn wheel; public since 2010, so the
  model may have read them: a check that it models English documentation, not a contamination-free
  score) and the reference answers of `data/text_references.json`, written for this evaluation.
- BLEU (sacrebleu) and ROUGE (rouge-score) of its greedy answers to the twenty prompts of
  `data/text_references.json` against their references.
- Tokens/s of that generation: batch 1, greedy, Hugging Face `generate` on the model itself (prompt
  prefill included), not the serving engine with its batching.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from infra.evaluation.metrics import bleu, perplexity, rouge

REFERENCES = Path(__file__).with_name("data") / "text_references.json"
#: tokens each perplexity window sees; the stride is half of it, so every scored token (after the
#: first window) has at least half a window of context
PPL_WINDOW = 512
MAX_NEW_TOKENS = 40


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Reference:
    prompt: str
    reference: str


def load_references(path: Path = REFERENCES) -> list[Reference]:
    return [Reference(**item) for item in json.loads(path.read_text())["items"]]


def sklearn_prose() -> list[str]:
    """The prose paragraphs of scikit-learn's dataset descriptions, reST markup removed; tables,
    code, directives and lists of numbers left out."""
    folder = resources.files("sklearn.datasets").joinpath("descr")
    paragraphs: list[str] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".rst"):
            continue
        for block in re.split(r"\n\s*\n", entry.read_text(encoding="utf-8")):
            text = " ".join(line.strip() for line in block.strip().splitlines())
            if not text or text[0] in ".:=*|>-+" or text.startswith(("..", ">>>")):
                continue
            text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)  # :func:`x` -> x
            text = re.sub(r"`([^`<]+?)\s*<[^>]+>`_+", r"\1", text)  # `name <url>`__ -> name
            text = text.replace("``", "").replace("`", "").replace("**", "")
            letters = sum(c.isalpha() or c.isspace() for c in text) / len(text)
            if len(text.split()) >= 12 and letters > 0.85:
                paragraphs.append(text)
    return paragraphs


@torch.inference_mode()
def token_nll(model: Any, ids: torch.Tensor, *, window: int = PPL_WINDOW) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of every token of ``ids`` (1-D) but the first, and how
    many tokens that is. Long sequences are scored in windows of ``window`` tokens advancing by half
    a window; each token is scored once, in the first window where it has half a window of context."""
    stride = max(1, window // 2)
    total, count, scored_to = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + window, len(ids))
        x = ids[begin:end].unsqueeze(0)
        logits = model(x).logits[0, :-1].float()
        nll = F.cross_entropy(logits, x[0, 1:], reduction="none")
        fresh = min(end - scored_to, len(nll))  # tokens no earlier window scored
        total += float(nll[len(nll) - fresh:].sum())
        count += fresh
        scored_to = end
        if end == len(ids):
            break
    return total, count


def corpus_perplexity(model: Any, tokenizer: Any, texts: list[str], *, window: int = PPL_WINDOW) -> tuple[float, int]:
    """Perplexity over ``texts`` (each scored as its own sequence) and the tokens predicted."""
    total, count = 0.0, 0
    for text in texts:
        ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
        if len(ids) < 2:
            continue
        nll, n = token_nll(model, ids, window=window)
        total, count = total + nll, count + n
    return perplexity(total, count), count


@torch.inference_mode()
def answer(model: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int = MAX_NEW_TOKENS,
           note: Callable[[str], None] = _quiet) -> tuple[list[str], int, float]:
    """Greedy answers to ``prompts`` (chat template, batch 1), the tokens generated and the seconds."""
    from infra.models.loader import format_chat

    answers, tokens, elapsed = [], 0, 0.0
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([format_chat(tokenizer, [{"role": "user", "content": prompt}])])
        start = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
        elapsed += time.perf_counter() - start
        new = out[0, ids.shape[1]:]
        tokens += len(new)
        answers.append(tokenizer.decode(new, skip_special_tokens=True).strip())
        note(f"text: answered {i + 1}/{len(prompts)}")
    return answers, tokens, elapsed


def score_model(model: Any, tokenizer: Any, *, quick: bool = False, note: Callable[[str], None] = _quiet) -> dict[str, Any]:
    """Every figure of the section for one model (the float one, or its quantised copy)."""
    refs = load_references()
    prose = sklearn_prose()
    if quick:
        refs, prose = refs[:4], prose[:6]
    note("text: perplexity")
    ppl_prose, n_prose = corpus_perplexity(model, tokenizer, prose)
    ppl_refs, n_refs = corpus_perplexity(model, tokenizer, [r.reference for r in refs])
    answers, tokens, seconds = answer(model, tokenizer, [r.prompt for r in refs], note=note)
    return {
        "perplexity_sklearn_prose": ppl_prose,
        "perplexity_sklearn_prose_tokens": n_prose,
        "perplexity_sklearn_prose_paragraphs": len(prose),
        "perplexity_references": ppl_refs,
        "perplexity_references_tokens": n_refs,
        "bleu": bleu(answers, [r.reference for r in refs]),
        "rouge": rouge(answers, [r.reference for r in refs]),
        "prompts": len(refs),
        "tokens_generated": tokens,
        "tokens_per_s": tokens / seconds,
        "examples": [{"prompt": r.prompt, "reference": r.reference, "answer": a} for r, a in zip(refs[:3], answers[:3])],
    }


def evaluate_text(*, quick: bool = False, note: Callable[[str], None] = _quiet) -> dict[str, Any]:
    """The section's figures for the served default text model, on CPU in float32."""
    from infra.models.loader import TextModelSpec, load_text_model

    note("text: loading the model")
    loaded = load_text_model(TextModelSpec(device="cpu", dtype="float32"))
    return {"available": True, "model": loaded.model_id, "dtype": "float32", "threads": torch.get_num_threads(),
            "max_new_tokens": MAX_NEW_TOKENS, "ppl_window": PPL_WINDOW,
            **score_model(loaded.model, loaded.tokenizer, quick=quick, note=note)}
