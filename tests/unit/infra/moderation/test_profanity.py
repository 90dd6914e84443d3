"""FastProfanity gives alt-profanity-check's own probabilities on the labelled quality set."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from infra.moderation.normalize import normalize

profanity_check = pytest.importorskip("profanity_check")

DATA = Path(__file__).resolve().parents[4] / "bench" / "data" / "moderation_texts.tsv"


def _texts() -> list[str]:
    rows = [r for r in csv.reader(DATA.open(encoding="utf-8"), delimiter="\t") if r and not r[0].startswith("#")]
    return [r[1] for r in rows if len(r) > 1]


def test_equals_the_package_on_the_labelled_set() -> None:
    from infra.moderation.profanity import FastProfanity

    texts = _texts()
    assert len(texts) >= 200
    # as the gate scores them (normalised), raw, and the edge cases: nothing in the vocabulary, repeats
    texts += [normalize(t) for t in texts] + ["", "the of and", "shit shit SHIT", "ünïcödé wörds 123"]
    expected = profanity_check.predict_prob(texts)
    got = FastProfanity()(texts)
    assert len(got) == len(texts)
    assert max(abs(a - b) for a, b in zip(expected, got)) < 1e-6
    assert any(p > 0.5 for p in got) and any(p < 0.5 for p in got)
