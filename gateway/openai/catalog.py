"""The text models this deployment serves, with what the gateway needs to validate a prompt
before anything is queued: the tokenizer (chat template) and the context length."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class TextModelEntry:
    name: str
    source: str  # folder or model id the tokenizer loads from
    revision: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    tokenizer: Any = None
    context_length: int | None = None

    def load(self) -> None:
        """Load the tokenizer and read the context length (blocking; call in a thread)."""
        from transformers import AutoConfig, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.source, revision=self.revision)
        config_file = Path(self.source) / "config.json"
        if config_file.exists():
            self.context_length = int(json.loads(config_file.read_text())["max_position_embeddings"])
        else:
            self.context_length = int(AutoConfig.from_pretrained(self.source).max_position_embeddings)

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """Tokens of the chat-formatted prompt, or None while the tokenizer is not loaded."""
        if self.tokenizer is None:
            return None
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return len(ids)


class TextModelCatalog:
    def __init__(self, entries: list[TextModelEntry]) -> None:
        self._entries = {e.name: e for e in entries}

    @classmethod
    def from_settings(cls) -> TextModelCatalog:
        from infra.models.settings import TextSettings

        s = TextSettings()
        source = s.model or str(s.cache_dir / "smollm2-135m-instruct")
        return cls([TextModelEntry(s.served_name, source, s.revision)])

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[TextModelEntry]:
        return list(self._entries.values())

    def get(self, name: str) -> TextModelEntry | None:
        return self._entries.get(name)

    async def load(self) -> None:
        """Load every tokenizer; a model whose files are not there yet is validated by its worker."""
        for entry in self._entries.values():
            try:
                await asyncio.to_thread(entry.load)
            except Exception as exc:  # files missing until the worker first builds its cache
                log.warning("tokenizer of %s not loaded (%s): prompt lengths are checked by the worker",
                            entry.name, exc)
