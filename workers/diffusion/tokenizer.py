"""A small CLIP BPE vocabulary generated from a word list, for the tiny random pipelines.

No CLIP vocabulary ships in the packages used here, so the tokenizer is built from scratch:
every byte (alone and word-final) is a token, and merges are learnt
so that each listed prompt word encodes to a single token. Unknown words fall back to bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer
from transformers.models.clip.tokenization_clip import bytes_to_unicode

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
#: CLIP's context length; the tiny text encoder uses the same number of positions.
MAX_LENGTH = 77

WORDS = (
    "a an the of in on at with and or to from by for is are photo picture painting drawing "
    "portrait landscape city street house room forest mountain river lake sea ocean beach sky "
    "cloud sun moon star night day morning evening light dark red green blue yellow white black "
    "orange purple pink gold silver cat dog bird horse fish tree flower garden car boat train "
    "robot person man woman child face eye hand old new small big tall beautiful detailed "
    "realistic style art digital oil watercolor sketch cinematic high quality sharp blurry "
    "bright soft warm cold snow rain fog fire water stone wood glass metal astronaut riding"
).split()


def _apply_merges(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding as CLIP does it: merge the lowest-ranked adjacent pair until none."""
    while len(symbols) > 1:
        pairs = [(ranks.get(p, len(ranks)), i) for i, p in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2 :]
    return symbols


def learn_merges(words: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """Merges under which every word encodes to one token.

    A new merge always ranks last, so it cannot change how earlier words encode: they are
    single tokens before it could apply.
    """
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        symbols = _apply_merges(list(word[:-1]) + [word[-1] + "</w>"], ranks)
        while len(symbols) > 1:
            ranks[(symbols[0], symbols[1])] = len(ranks)
            symbols = _apply_merges(symbols, ranks)
    return list(ranks)


def write_vocab(folder: Path, words: tuple[str, ...] | list[str] = WORDS) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    byte_chars = list(bytes_to_unicode().values())
    merges = learn_merges(words)
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + [a + b for a, b in merges]
    vocab: dict[str, int] = {}
    for tok in [*tokens, BOS, EOS]:
        vocab.setdefault(tok, len(vocab))
    vocab_file = folder / "vocab.json"
    merges_file = folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False))
    merges_file.write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    return vocab_file, merges_file


def build_tiny_tokenizer(folder: Path) -> CLIPTokenizer:
    vocab_file, merges_file = write_vocab(folder)
    return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=MAX_LENGTH)
