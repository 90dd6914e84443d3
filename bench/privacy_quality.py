"""Redaction quality of the privacy stage on a labelled set written for it (bench/data/privacy_sentences.txt).

Per entity type: precision (of what was found, how much was that type of personal data) and recall
(of what was planted, how much was found as that type), plus how much of each type was hidden at all
(found under any type: what matters for privacy). A planted value counts as found when spans of its
type cover at least 80% of its characters; a found span counts as right when at least half of it
lies in a planted value of its type. Targets: recall >= 0.95 for e-mails, phones, cards and IBANs,
>= 0.85 for names.

    .venv/bin/python bench/privacy_quality.py      # writes bench/results/privacy_quality.json
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas.redaction import Entity  # noqa: E402
from streams.privacy.engine import SPACY_MODEL, PiiAnalyzer  # noqa: E402

DATA = ROOT / "bench" / "data" / "privacy_sentences.txt"
OUT = ROOT / "bench" / "results" / "privacy_quality.json"
TARGETS = {"EMAIL": 0.95, "PHONE": 0.95, "CARD": 0.95, "IBAN": 0.95, "PERSON": 0.85}
_MARK = re.compile(r"\{\{([A-Z]+):(.+?)\}\}")


def load(path: Path = DATA) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """(text, [(start, end, type)]) per sentence, the markup removed."""
    out = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        text, spans, at = "", [], 0
        for m in _MARK.finditer(line):
            text += line[at:m.start()]
            spans.append((len(text), len(text) + len(m.group(2)), Entity(m.group(1)).value))
            text += m.group(2)
            at = m.end()
        out.append((text + line[at:], spans))
    return out


def score(data, predictions) -> dict:
    types = [e.value for e in Entity]
    c = {t: {"gold": 0, "found": 0, "hidden": 0, "predicted": 0, "right": 0} for t in types}
    misses: list[dict] = []
    false: list[dict] = []
    for (text, gold), pred in zip(data, predictions):
        for start, end, kind in gold:
            same = set().union(*[range(max(s.start, start), min(s.end, end)) for s in pred if s.entity.value == kind])
            anyt = set().union(*[range(max(s.start, start), min(s.end, end)) for s in pred])
            c[kind]["gold"] += 1
            if len(same) >= 0.8 * (end - start):
                c[kind]["found"] += 1
            else:
                misses.append({"type": kind, "value": text[start:end], "text": text})
            if len(anyt) >= 0.8 * (end - start):
                c[kind]["hidden"] += 1
        for s in pred:
            kind = s.entity.value
            c[kind]["predicted"] += 1
            inside = sum(max(0, min(s.end, e) - max(s.start, b)) for b, e, k in gold if k == kind)
            if inside >= 0.5 * (s.end - s.start):
                c[kind]["right"] += 1
            else:
                false.append({"type": kind, "value": text[s.start:s.end], "text": text})
    per_type = {}
    for t, v in c.items():
        per_type[t] = {
            "planted": v["gold"], "found": v["found"], "predicted": v["predicted"],
            "precision": round(v["right"] / v["predicted"], 3) if v["predicted"] else None,
            "recall": round(v["found"] / v["gold"], 3) if v["gold"] else None,
            "hidden": round(v["hidden"] / v["gold"], 3) if v["gold"] else None,
            "target_recall": TARGETS.get(t),
        }
    return {"per_type": per_type, "misses": misses, "false_positives": false}


def main() -> None:
    data = load()
    began = time.perf_counter()
    analyzer = PiiAnalyzer()
    built = time.perf_counter() - began
    began = time.perf_counter()
    predictions = analyzer.analyze([t for t, _ in data])
    spent = time.perf_counter() - began
    result = {
        "sentences": len(data), "planted": sum(len(g) for _, g in data),
        "no_pii_sentences": sum(1 for _, g in data if not g),
        "model": f"presidio-analyzer 2.2.366 + {SPACY_MODEL} + genloom recognizers",
        "build_s": round(built, 2), "analyse_ms_per_sentence": round(spent * 1000 / len(data), 2),
        **score(data, predictions),
    }
    print(f"{result['sentences']} sentences ({result['no_pii_sentences']} without personal data), "
          f"{result['planted']} planted values; {result['analyse_ms_per_sentence']} ms per sentence in one batch")
    print(f"{'type':8} {'planted':>7} {'precision':>9} {'recall':>7} {'hidden':>7} {'target':>7}")
    for t, v in result["per_type"].items():
        print(f"{t:8} {v['planted']:7} {v['precision'] if v['precision'] is not None else 'n/a':>9} "
              f"{v['recall'] if v['recall'] is not None else 'n/a':>7} {v['hidden'] if v['hidden'] is not None else 'n/a':>7} "
              f"{v['target_recall'] or '':>7}")
    for m in result["misses"]:
        print(f"  missed {m['type']}: {m['value']!r}")
    for m in result["false_positives"]:
        print(f"  false {m['type']}: {m['value']!r}  <- {m['text']}")
    OUT.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
