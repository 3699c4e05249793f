"""Benchmark: wake word hits and near-miss triggers on varied Piper speech, by patience.

    python bench/wakeword.py [--samples 60] [--snr-db 20] [--out bench/results/wakeword.json]

Piper with its sampling noise on (every rendering differs) and a random speaking rate
(length scale 0.8-1.3) says ``--samples`` wake phrases ("hey jarvis" in several forms) and
``--samples`` near misses ("hey java", "hey travis", ...), each between silences, optionally
over white noise at ``--snr-db``. Everything goes through the real openWakeWord engine as
one stream, 80 ms chunks. For each utterance the longest run of frames at or above the
threshold is kept: a detection needs ``patience`` such frames in a row, so the JSON gives the
hit rate and the near-miss trigger rate for every patience from 3 to 10, and which the
configured patience actually detected.
"""

from __future__ import annotations

import argparse
import collections
import platform
import random

import numpy as np
from common import WakeScores, longest_run, run

from heisenberg.audio.format import RATE_HZ, resample
from heisenberg.core.config import TTSConfig, WakeWordConfig
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.wakeword import OpenWakeWordEngine

WAKE = ["Hey Jarvis.", "Hey Jarvis, what time is it?", "Hey, Jarvis.", "Hey Jarvis!"]
NEAR = ["Hey Java developers.", "Hey Travis.", "Hey Harvey.", "Hey Jervis.", "Hey Marvin.",
        "Jarvis.", "Hey Charlie.", "Hey, Davis.", "Hey service."]
PATIENCES = range(3, 11)


async def measure(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    noise = np.random.default_rng(args.seed)
    tts = PiperTTS(TTSConfig())  # sampling noise on: no two renderings are the same
    config = WakeWordConfig(refractory_s=0.0)
    engine = OpenWakeWordEngine(config)
    wake_scores = WakeScores(engine)
    rows: dict[str, list[dict[str, object]]] = {"wake": [], "near_miss": []}
    for kind, phrases in (("wake", WAKE), ("near_miss", NEAR)):
        for i in range(args.samples):
            phrase = phrases[i % len(phrases)]
            scale = round(rng.uniform(0.8, 1.3), 2)
            tts._syn.length_scale = scale  # the loaded voice at another rate (no reload)
            said = resample(tts.synthesize(phrase).array(), tts.rate_hz, RATE_HZ)
            audio = np.concatenate([np.zeros(RATE_HZ, np.int16), said,
                                    np.zeros(RATE_HZ * 3 // 2, np.int16)]).astype(np.float64)
            if args.snr_db is not None:
                power = float(np.mean(said.astype(np.float64) ** 2))
                audio += noise.normal(0, np.sqrt(power / 10 ** (args.snr_db / 10)), len(audio))
            pcm = np.clip(audio, -32768, 32767).astype(np.int16)
            scores, detected = wake_scores(pcm)
            rows[kind].append({"phrase": phrase, "length_scale": scale,
                               "longest_run": longest_run(scores, config.threshold),
                               "max_score": round(max(scores), 4), "detected": detected})
    engine.close()

    def rates(kind: str) -> dict[str, float]:
        runs = [int(str(r["longest_run"])) for r in rows[kind]]
        return {str(p): round(sum(n >= p for n in runs) / len(runs), 3) for p in PATIENCES}

    by_phrase = {kind: {phrase: collections.Counter(
        int(str(r["longest_run"])) for r in rows[kind] if r["phrase"] == phrase)
        for phrase in dict.fromkeys(str(r["phrase"]) for r in rows[kind])}
        for kind in rows}
    return {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "model": config.model, "threshold": config.threshold,
        "configured_patience": config.patience, "samples_each": args.samples,
        "snr_db": args.snr_db, "seed": args.seed,
        "detected_at_configured_patience": {
            kind: round(sum(bool(r["detected"]) for r in rows[kind]) / len(rows[kind]), 3)
            for kind in rows},
        "hit_rate_by_patience": rates("wake"),
        "near_miss_trigger_rate_by_patience": rates("near_miss"),
        "longest_run_by_phrase": {kind: {phrase: dict(sorted(count.items()))
                                         for phrase, count in phrases.items()}
                                  for kind, phrases in by_phrase.items()},
        "utterances": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--snr-db", type=float, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="bench/results/wakeword.json")
    run(measure, ap)


if __name__ == "__main__":
    main()
