"""Benchmark: is "hey jarvis" heard over the assistant's own voice? By loudness and threshold.

    python bench/barge_in.py [--samples 20] [--out bench/results/barge_in.json]

While the assistant speaks through a loudspeaker, the microphone hears the user's wake word
mixed with the assistant's voice. For each level of the assistant's voice relative to the
user's (``--gains-db``; -100 is silence, 0 is as loud as the user), Piper renders
``--samples`` times (sampling noise on) a long answer and "Hey Jarvis." at a random moment
of it; the sum goes through the real openWakeWord engine in 80 ms chunks, and a detection is
``patience`` frames in a row at or above each threshold (``wakeword.speaking_threshold``
candidates). No echo cancellation is applied: this is the raw mix a microphone hears.
"""

from __future__ import annotations

import argparse
import platform
import random

import numpy as np
from common import WakeScores, longest_run, run

from heisenberg.audio.format import RATE_HZ, resample
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
    engine = OpenWakeWordEngine(config)
    wake_scores = WakeScores(engine)

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
            scores, _ = wake_scores(pcm)
            for threshold in THRESHOLDS:
                heard[threshold] += longest_run(scores, threshold) >= config.patience
        results[str(gain_db)] = {str(t): round(n / args.samples, 3) for t, n in heard.items()}
    engine.close()
    return {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "model": config.model, "patience": config.patience, "samples_each": args.samples,
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
