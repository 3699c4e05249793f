"""Benchmark: is "hey jarvis" heard over the assistant's own voice? By loudness and threshold.

    python bench/barge_in.py [--samples 20] [--out bench/results/barge_in.json]

While the assistant speaks through a loudspeaker, the microphone hears the user's wake word
mixed with the assistant's voice. For each level of the assistant's voice relative to the
user's (``--gains-db``; -100 is silence, 0 is as loud as the user), Piper renders
``--samples`` times (sampling noise on) a long answer and "Hey Jarvis." at a random moment
of it; the sum goes through the daemon's wake word engine (default config: candidate, then the
verifier) in 80 ms chunks, with each candidate ``wakeword.speaking_threshold`` as the raised
stage-1 threshold it uses while the speaker plays; heard = a confirmed detection. No echo
cancellation is applied: this is the raw mix a microphone hears.
"""

from __future__ import annotations

import argparse
import platform
import random

import numpy as np
from common import run

from heisenberg.audio.format import RATE_HZ, chunks_of, resample
from heisenberg.core.config import TTSConfig, WakeWordConfig
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.wakeword import OpenWakeWordEngine

ANSWER = ("Once upon a time, in a land far away, there lived a mighty dragon who guarded a "
          "mountain of gold and slept for a hundred years, and nobody dared to wake him up.")
THRESHOLDS = (0.5, 0.7, 0.9)


async def measure(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    tts = PiperTTS(TTSConfig())
    config = WakeWordConfig(refractory_s=0.0)
    engines = {t: OpenWakeWordEngine(config) for t in THRESHOLDS}
    clock_ms = 0

    def speech(text: str) -> np.ndarray:
        audio = tts.synthesize(text).array()
        return resample(audio, tts.rate_hz, RATE_HZ).astype(np.float64)

    results: dict[str, dict[str, float]] = {}
    for gain_db in args.gains_db:
        heard = dict.fromkeys(THRESHOLDS, 0)
        for _ in range(args.samples):
            mix = speech(ANSWER) * 10 ** (gain_db / 20)
            wake = speech("Hey Jarvis.")
            at = int(RATE_HZ * rng.uniform(1.5, 6.0))
            mix[at:at + len(wake)] += wake
            pcm = np.clip(np.concatenate([np.zeros(RATE_HZ), mix, np.zeros(RATE_HZ)]),
                          -32768, 32767).astype(np.int16)
            for threshold, engine in engines.items():
                heard[threshold] += any(
                    d is not None and d.confirmed
                    for d in (engine.process(c, threshold)
                              for c in chunks_of(pcm, start_ms=clock_ms)))
            clock_ms += len(pcm) * 1000 // RATE_HZ
        results[str(gain_db)] = {str(t): round(n / args.samples, 3) for t, n in heard.items()}
    for engine in engines.values():
        engine.close()
    return {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "model": config.model, "rule": "candidate at the raised threshold, then the verifier",
        "samples_each": args.samples,
        "seed": args.seed,
        "heard_by_assistant_level_db_and_threshold": results,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--gains-db", type=float, nargs="+", default=[-100, -18, -12, -6, 0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="bench/results/barge_in.json")
    run(measure, ap)


if __name__ == "__main__":
    main()
