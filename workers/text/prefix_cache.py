"""Keys and values of prompt heads already prefilled, reused by later prompts that start the same way.

Chat prompts share long heads: the chat template's system turn, an application's fixed instructions,
the history of a conversation that goes on. Their keys and values are the same for every prompt that
starts with the same tokens (attention is causal: a token's keys depend only on the tokens before it),
so a prefill computes them once and later prompts start where the cached head ends (vLLM's automatic
prefix caching). On a CPU, where a prompt token costs about as much as a decode step's token, this is
time to first token saved one for one.

Layout: blocks of ``block`` tokens. A block is found by a digest of its tokens chained to the digest
of the block before it, so a digest names a whole head, never a block of tokens out of context. Each
block holds one tensor ``[layers, 2, kv_heads, block, head_dim]`` (keys, then values). Least recently
used blocks are evicted beyond ``capacity_tokens``; a head's first blocks are used before (and so
outlive) its later ones.

Heads are shared only between requests with the same ``salt`` (the engine passes the tenant): how
fast a prompt's first token comes would otherwise tell one tenant whether another sent a prompt that
starts like its own.

Batch invariance is kept: a prompt prefilled after a cached head computes exactly what a packed
prefill computes for a prompt after a shared prefix (its queries over the head's keys and its own),
and the head's keys and values are the bits any prefill of the same tokens gives (see
:mod:`infra.models.invariant`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Sequence

import torch

#: tokens per block (vLLM's default): a head is reused up to its last whole block
BLOCK_TOKENS = 16


class PrefixCache:
    """Prompt heads' keys and values by blocks, least recently used evicted; see the module docstring."""

    def __init__(self, capacity_tokens: int, *, block: int = BLOCK_TOKENS) -> None:
        if block < 1 or capacity_tokens < 0:
            raise ValueError("block must be >= 1 and capacity_tokens >= 0")
        self.block = block
        self.capacity_blocks = capacity_tokens // block
        self._blocks: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.queries = 0  #: prompt tokens looked up
        self.hits = 0  #: of them, tokens whose keys and values came from the cache

    def __len__(self) -> int:
        """Blocks held."""
        return len(self._blocks)

    @property
    def enabled(self) -> bool:
        return self.capacity_blocks > 0

    def _digests(self, salt: str, tokens: Sequence[int], blocks: int) -> list[bytes]:
        digest, out = hashlib.blake2b(salt.encode(), digest_size=16).digest(), []
        for b in range(blocks):
            chunk = tokens[b * self.block : (b + 1) * self.block]
            digest = hashlib.blake2b(digest + b"".join(t.to_bytes(4, "little") for t in chunk), digest_size=16).digest()
            out.append(digest)
        return out

    def match(self, salt: str, tokens: Sequence[int], limit: int) -> tuple[int, torch.Tensor | None]:
        """The longest cached head of ``tokens`` of at most ``limit`` tokens (whole blocks): its length,
        and its keys and values ``[layers, 2, kv_heads, length, head_dim]`` (None for length 0)."""
        if not self.enabled:
            return 0, None
        found: list[torch.Tensor] = []
        for digest in self._digests(salt, tokens, min(limit, len(tokens)) // self.block):
            kv = self._blocks.get(digest)
            if kv is None:
                break
            self._blocks.move_to_end(digest)
            found.append(kv)
        if not found:
            return 0, None
        return len(found) * self.block, found[0] if len(found) == 1 else torch.cat(found, dim=3)

    def count(self, prompt_tokens: int, cached_tokens: int) -> None:
        """Record one prompt's lookup: its length and how many of its tokens came from the cache."""
        self.queries += prompt_tokens
        self.hits += cached_tokens

    def insert(self, salt: str, tokens: Sequence[int], layer_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
        """Hold the whole blocks of ``tokens`` whose keys and values ``layer_kv`` gives (per layer,
        ``[kv_heads, len(tokens), head_dim]`` each) and that are not held yet. Returns blocks added."""
        if not self.enabled:
            return 0
        added = 0
        for b, digest in enumerate(self._digests(salt, tokens, len(tokens) // self.block)):
            if digest in self._blocks:
                self._blocks.move_to_end(digest)
                continue
            cols = slice(b * self.block, (b + 1) * self.block)
            self._blocks[digest] = torch.stack([torch.stack((k[:, cols], v[:, cols])) for k, v in layer_kv])
            added += 1
        while len(self._blocks) > self.capacity_blocks:
            self._blocks.popitem(last=False)
        return added

    def clear(self) -> None:
        self._blocks.clear()
