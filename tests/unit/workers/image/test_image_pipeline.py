from __future__ import annotations

from pathlib import Path

from infra.models.storage import MARKER_FILE, RANDOM_WEIGHTS, read_marker, save_once
from infra.models.tiny_tokenizer import BOS, EOS, WORDS, build_tiny_tokenizer
from workers.image.engine import PRODUCTION_IMAGE_MODEL_ID


def test_production_profile_names_sd35_large() -> None:
    assert PRODUCTION_IMAGE_MODEL_ID == "stabilityai/stable-diffusion-3.5-large"


def test_save_once_builds_once_and_rebuilds_on_marker_change(tmp_path: Path) -> None:
    builds: list[Path] = []

    def build(folder: Path) -> None:
        builds.append(folder)
        folder.mkdir()
        (folder / "weights.bin").write_bytes(b"x")

    target = tmp_path / "m"
    marker: dict[str, object] = {"weights": RANDOM_WEIGHTS, "version": 1}
    assert save_once(target, marker, build) == target
    assert save_once(target, marker, build) == target
    assert len(builds) == 1
    assert read_marker(target) == marker
    save_once(target, {**marker, "version": 2}, build)
    assert len(builds) == 2 and (target / MARKER_FILE).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp or stale folders left


def test_tiny_tokenizer_encodes_listed_words_as_one_token(tmp_path: Path) -> None:
    tok = build_tiny_tokenizer(tmp_path)
    ids = tok("a photo of a cat").input_ids
    vocab = tok.get_vocab()
    assert ids[0] == vocab[BOS] and ids[-1] == vocab[EOS]
    assert len(ids) == 2 + 5
    assert len(tok("zqxv").input_ids) > 3  # unknown words fall back to bytes


def test_every_listed_word_is_one_token(tmp_path: Path) -> None:
    tok = build_tiny_tokenizer(tmp_path)
    long_words = [w for w in WORDS if len(w) > 1]
    assert all(len(tok(w, add_special_tokens=False).input_ids) == 1 for w in long_words)
