"""open_index: the settings choose the backend, once, at the edge."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.settings.memory import MemorySettings
from infra.vectors import open_index
from infra.vectors.embedded import EmbeddedVectorIndex


def test_the_embedded_default_lives_under_home_unless_a_path_is_given(tmp_path: Path) -> None:
    index = open_index(MemorySettings(), tmp_path, 384)
    assert isinstance(index, EmbeddedVectorIndex) and index.root == tmp_path / "vectors" and index.dims == 384
    assert open_index(MemorySettings(vector_path=str(tmp_path / "elsewhere")), tmp_path, 8).root == tmp_path / "elsewhere"


def test_weaviate_needs_a_url_and_unknown_backends_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="GENLOOM_MEMORY_WEAVIATE_URL"):
        open_index(MemorySettings(vectors="weaviate"), tmp_path, 384)
    with pytest.raises(ValueError, match="embedded"):
        open_index(MemorySettings(vectors="faiss"), tmp_path, 384)
