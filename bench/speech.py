"""Speech: real-time factor, and time to first audio when streamed vs time to the whole file.

Baseline: `SpeechEngine.synthesize_all` (the whole paragraph, then one WAV file).
genloom: `SpeechEngine.stream` (sentence by sentence; the first chunk can play at once).
Both run in this process on the same loaded voice, alternating, and the medians are reported.

    python bench/speech.py [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from infra.models.voices import SHIPPED_VOICE_NAME
from workers.speech.engine import SpeechEngine
from workers.speech.synthesizer import PiperSynthesizer

PARAGRAPH = (
    "The harbour was quiet when the first boats came in. "
    "Gulls circled above the nets, waiting for scraps. "
    "Dr. Hale counted the catch and wrote 3.5 tonnes in her ledger. "
    "By noon the market was loud with buyers from three towns. "
    "When the tide turned, the boats went out again."
)
RESULTS = Path(__file__).parent / "results" / "speech.json"
WAV_HEADER_BYTES = 44  # the stdlib wave writer's canonical PCM header


def run_whole(engine: SpeechEngine) -> dict[str, float]:
    start = time.perf_counter()
    wav = engine.synthesize_all(PARAGRAPH, SHIPPED_VOICE_NAME, 1.0, "wav")
    elapsed = time.perf_counter() - start
    audio_s = (len(wav) - WAV_HEADER_BYTES) / 2 / engine.sample_rate
    return {"first_audio_s": elapsed, "total_s": elapsed, "audio_s": audio_s}


def run_stream(engine: SpeechEngine) -> dict[str, float]:
    start = time.perf_counter()
    first = 0.0
    audio_s = 0.0
    for chunk in engine.stream(PARAGRAPH, SHIPPED_VOICE_NAME, 1.0, "wav"):
        if chunk.index == 0:
            first = time.perf_counter() - start
        audio_s += chunk.duration_s
    total = time.perf_counter() - start
    return {"first_audio_s": first, "total_s": total, "audio_s": audio_s}


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    synth = PiperSynthesizer.with_shipped_voice(intra_op_threads=args.threads)
    load_start = time.perf_counter()
    synth.start()  # loads the voice and runs its warm-up sentence
    load_s = time.perf_counter() - load_start
    engine = SpeechEngine(synth)
    sentences = len(engine.plan(PARAGRAPH, SHIPPED_VOICE_NAME).sentences)

    whole: list[dict[str, float]] = []
    streamed: list[dict[str, float]] = []
    for i in range(args.repeats):  # alternate so drift on a shared machine hits both alike
        pair = (run_whole, run_stream) if i % 2 == 0 else (run_stream, run_whole)
        for fn in pair:
            (whole if fn is run_whole else streamed).append(fn(engine))

    rows = {}
    for label, runs in (("baseline: whole file", whole), ("genloom: streamed", streamed)):
        total, audio, first = (median(runs, k) for k in ("total_s", "audio_s", "first_audio_s"))
        rows[label] = {
            "first_audio_s": round(first, 4),
            "total_s": round(total, 4),
            "audio_s": round(audio, 3),
            "rtf": round(total / audio, 4),
        }
    base, ours = rows["baseline: whole file"], rows["genloom: streamed"]
    ratio = round(base["first_audio_s"] / ours["first_audio_s"], 2)

    print(f"piper voice {SHIPPED_VOICE_NAME!r}, {sentences} sentences, {len(PARAGRAPH)} chars, "
          f"onnxruntime threads {args.threads}, median of {args.repeats}, load+warm-up {load_s:.2f} s")
    print(f"{'':24}{'first audio (s)':>16}{'total (s)':>11}{'audio (s)':>11}{'RTF':>8}")
    for label, row in rows.items():
        print(f"{label:24}{row['first_audio_s']:>16.3f}{row['total_s']:>11.3f}"
              f"{row['audio_s']:>11.2f}{row['rtf']:>8.3f}")
    print(f"time to first audio: streamed is {ratio}x sooner than waiting for the whole file")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "speech",
        "voice": SHIPPED_VOICE_NAME,
        "synthesizer": synth.name,
        "sentences": sentences,
        "chars": len(PARAGRAPH),
        "onnxruntime_intra_op_threads": args.threads,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "load_and_warm_up_s": round(load_s, 3),
        "results": rows,
        "first_audio_speedup": ratio,
        "runs": {"whole": whole, "streamed": streamed},
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
