"""Whisper on a short window against its usual 30 s one: word error rate and time.

    python bench/stt_window.py [--split test] [--windows 30 12]

CTranslate2 encodes whatever window it is given, and its cost is the window's length; the
default (``stt.window_s`` 12 s, see heisenberg/voice/stt.py) was chosen on the dev voices.
Questions (bench/latency.py's, the skills', short replies and bench/endpointing.py's long
sentences) are said by each voice of the split, clean and over real recorded noise (music,
machine sounds) at 10 and 5 dB, and transcribed through ``WhisperSTT`` with each window
(30 = faster-whisper's own path). Writes bench/results/stt_window[_dev].json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import speech_sets as ss
from common import summary
from endpointing import SENTENCES, wer_counts
from latency import QUESTIONS, SKILL_QUESTIONS

from heisenberg.core.config import STTConfig
from heisenberg.voice.stt import WhisperSTT

TEXTS = [*QUESTIONS, *SKILL_QUESTIONS, "Set a timer for ten minutes.", "Stop.", "Never mind.",
         "Wait, how tall is the Eiffel Tower?", *SENTENCES[:8]]
CONDITIONS = [("clean", None), ("10dB", 10.0), ("5dB", 5.0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("dev", "test"), default="test")
    parser.add_argument("--windows", type=float, nargs="+", default=[30.0, 12.0])
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    noise = list(ss.noise_bank(30).values())
    clips: list[tuple[str, str, str, np.ndarray]] = []
    for voice in (v for v in ss.voices() if v.split == args.split):
        for text in TEXTS:
            speech = voice.render(text, rng)
            for condition, snr in CONDITIONS:
                audio = (np.concatenate([np.zeros(3200, np.int16), speech,
                                         np.zeros(2400, np.int16)]) if snr is None else
                         ss.mix(speech, noise[rng.integers(len(noise))], snr, rng, 3200, 2400))
                clips.append((voice.name, condition, text, audio))
    results: dict[str, object] = {}
    for window in args.windows:
        stt = WhisperSTT(STTConfig(window_s=window))
        stt.transcribe(clips[0][3])  # warm
        stt.full_windows = 0
        by: dict[str, dict[str, list[float]]] = {}
        for _voice, condition, text, audio in clips:
            started = time.perf_counter()
            heard = stt.transcribe(audio)
            ms = 1000 * (time.perf_counter() - started)
            errors, words = wer_counts(text, heard)
            row = by.setdefault(condition, {"errors": [], "words": [], "ms": []})
            row["errors"].append(errors)
            row["words"].append(words)
            row["ms"].append(ms)
        results[f"{window:g}"] = {
            "full_windows": stt.full_windows, "clips": len(clips),
            **{condition: {"wer_percent": round(100 * sum(r["errors"]) / sum(r["words"]), 1),
                           "ms": summary(r["ms"], 0)} for condition, r in by.items()}}
        print(f"{window:g} s", results[f"{window:g}"], file=sys.stderr, flush=True)
    out = Path(__file__).parent / "results" / (
        "stt_window.json" if args.split == "test" else "stt_window_dev.json")
    out.write_text(json.dumps({
        "machine": {"cpus": 2, "python": sys.version.split()[0]}, "split": args.split,
        "voices": sorted({c[0] for c in clips}), "texts": len(TEXTS), "seed": args.seed,
        "by_window_s": results}, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main()
