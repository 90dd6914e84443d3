"""Llama Guard as a text classifier, for a GPU deployment: its hazard categories mapped onto the
OpenAI taxonomy genloom scores in.

Llama Guard answers a conversation with `safe`, or `unsafe` and a line of hazard codes (S1, S10,
...). `parse` reads that answer; `LLAMA_GUARD_3` maps each code to the categories it counts for
(codes with no counterpart, such as elections or specialized advice, count for none: a tenant
that wants them blocked uses a block list). A code it names scores 1.0 in its categories; the
rest score 0. `LlamaGuardClassifier` loads the model by id with transformers
(`GENLOOM_MODERATION_CLASSIFIER=llama-guard`, `GENLOOM_MODERATION_LLAMA_GUARD_MODEL`); no Llama
Guard weights ship in a wheel, so it is not run on these machines (README, Moderation).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from schemas.enums import ModerationCategory as C

from .text import Scores

#: Llama Guard 3's hazard taxonomy (S1-S14) -> the categories each code counts for
LLAMA_GUARD_3: dict[str, tuple[C, ...]] = {
    "S1": (C.ILLICIT_VIOLENT, C.ILLICIT, C.VIOLENCE),  # violent crimes
    "S2": (C.ILLICIT,),  # non-violent crimes
    "S3": (C.SEXUAL, C.ILLICIT),  # sex-related crimes
    "S4": (C.SEXUAL_MINORS, C.SEXUAL),  # child sexual exploitation
    "S5": (C.HARASSMENT,),  # defamation
    "S6": (),  # specialized advice
    "S7": (),  # privacy (the privacy stage redacts personal data)
    "S8": (),  # intellectual property
    "S9": (C.ILLICIT_VIOLENT, C.ILLICIT),  # indiscriminate weapons
    "S10": (C.HATE,),  # hate
    "S11": (C.SELF_HARM,),  # suicide and self-harm
    "S12": (C.SEXUAL,),  # sexual content
    "S13": (),  # elections
    "S14": (C.ILLICIT,),  # code interpreter abuse
}
_CODE = re.compile(r"\bS(\d{1,2})\b")


class UnreadableVerdict(ValueError):
    """The model answered something that is neither `safe` nor `unsafe` with codes."""


def parse(answer: str) -> Scores:
    """Category scores from a Llama Guard answer (raises UnreadableVerdict for anything else)."""
    text = answer.strip().lower()
    scores = {c.value: 0.0 for c in C}
    if text.startswith("safe"):
        return scores
    if not text.startswith("unsafe"):
        raise UnreadableVerdict(f"not a Llama Guard verdict: {answer[:40]!r}")
    codes = {f"S{n}" for n in _CODE.findall(answer.upper())}
    unknown = codes - set(LLAMA_GUARD_3)
    if unknown or not codes:
        raise UnreadableVerdict(f"unsafe without known hazard codes: {answer[:40]!r}")
    for code in codes:
        for category in LLAMA_GUARD_3[code]:
            scores[category.value] = 1.0
    return scores


class LlamaGuardClassifier:
    """A Llama Guard model behind the `TextClassifier` interface. `generate` (a batch of user turns
    in, the model's answers out) is built from the model id here; tests hand in their own."""

    def __init__(self, model_id: str, *, device: str = "cuda", generate: Callable[[list[str]], list[str]] | None = None,
                 ) -> None:
        self.name = f"llama-guard:{model_id}"
        self._generate = generate or _transformers_generate(model_id, device)

    def scores(self, texts: Sequence[str]) -> list[Scores]:
        if not texts:
            return []
        return [parse(answer) for answer in self._generate(list(texts))]


def _transformers_generate(model_id: str, device: str) -> Callable[[list[str]], list[str]]:
    """Greedy answers of the model by id (its own chat template frames each text as a user turn)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype).to(device).eval()

    def generate(texts: list[str]) -> list[str]:
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False) for t in texts]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.inference_mode():
            out = model.generate(**batch, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)

    return generate
