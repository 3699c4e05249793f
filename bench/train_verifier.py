"""Train the bundled wake word verifier (heisenberg/voice/verifiers/hey_jarvis.npz).

    python bench/train_verifier.py [--per-voice 16] [--out PATH]

Only ``dev`` material is used (bench/speech_sets.py): the dev voices, each also pitch-shifted
four ways (0.88-1.13: a smaller or larger speaker), saying the wake phrase with and without
a question, clean and over real recorded noise at 10 and 5 dB; the dev half of the real
recordings (asterisk prompts in four languages, music) as negatives. Positives are the
frames at the model's peak on the clean rendering (the same frames of the noisy copies);
negatives are the frames away from it, every frame of the near misses, and frames of the
real recordings.

The threshold written into the file is chosen by leave-one-voice-out: each dev voice (with
its pitch variants) is held out in turn, a verifier trained on the others scores it, and
the threshold is the lowest at which the held-out near misses (clean) wake it at most 5 %
of the time. The test voices are never looked at: bench/wakeword.py measures on them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import pickle
from pathlib import Path

import numpy as np
from speech_sets import (
    MUSIC_GLOBS,
    SPEECH_GLOBS,
    Voice,
    load,
    mix,
    noise_bank,
    pitch_shift,
    recordings,
    voices,
)

from heisenberg.audio.format import RATE_HZ
from heisenberg.enroll import Embedder
from heisenberg.voice.verifier import Verifier

WAKE = ["Hey Jarvis.", "Hey Jarvis, what time is it?", "Hey, Jarvis.", "Hey Jarvis!",
        "Hey Jarvis, turn on the light.", "Hey Jarvis, how are you today?",
        "Hey Jarvis, what's the weather like?", "Hey Jarvis, set a timer for five minutes."]
NEAR = ["Hey Java developers.", "Hey Travis.", "Hey Harvey.", "Hey Jervis.", "Hey Marvin.",
        "Jarvis.", "Hey Charlie.", "Hey, Davis.", "Hey service.", "Hey, nervous?",
        "Hey Jack, it is.", "Jarvis is a name.", "Harvest.", "Hey Jarrod."]
PITCHES = (1.0, 0.88, 0.95, 1.06, 1.13)
SNRS = (None, 10.0, 5.0)


def _voice_frames(task: tuple[str, float, int, int]) -> list[dict[str, object]]:
    """One dev voice at one pitch: its renderings, clean and in noise, as frames."""
    name, pitch, per_voice, seed = task
    base = {v.name: v for v in voices()}[name]
    voice = base if pitch == 1.0 else Voice(f"{name}@{pitch}", "dev",
                                            pitch_shift(base.render, pitch))
    rng = np.random.default_rng([seed, PITCHES.index(pitch), sorted(VOICES).index(name)])
    bank = noise_bank()
    embed = Embedder("hey_jarvis")
    rows: list[dict[str, object]] = []
    before, after = np.zeros(RATE_HZ, np.int16), np.zeros(RATE_HZ // 2, np.int16)
    for kind, phrases, n in (("wake", WAKE, per_voice), ("near", NEAR, len(NEAR))):
        for i in range(n):
            said = voice.render(phrases[i % len(phrases)], rng)
            peak = None
            for snr in SNRS:
                audio = np.concatenate([before, said, after]) if snr is None else mix(
                    said, bank[sorted(bank)[int(rng.integers(len(bank)))]], snr, rng,
                    len(before), len(after))
                scores, feats = embed(audio, pad=False)
                if peak is None:
                    peak = int(np.argmax(scores)) if scores.max() >= 0.2 else -1
                rows.append({"group": name, "kind": kind, "snr": snr, "peak": peak,
                             "feats": feats.astype(np.float32)})
    embed.close()
    print(f"{voice.name}: {len(rows)} clips", flush=True)
    return rows


def _recording_frames(paths: list[str], step: int = 6) -> np.ndarray:
    """Frames of real recordings played back to back (every ``step``-th frame)."""
    embed = Embedder("hey_jarvis")
    gap = np.zeros(4000, np.int16)
    _, feats = embed(np.concatenate([x for p in paths for x in (load(p), gap)]), pad=False)
    embed.close()
    return feats[::step].astype(np.float32)


VOICES = [v.name for v in voices() if v.split == "dev"]


def dev_data(per_voice: int, seed: int, procs: int) -> tuple[list[dict[str, object]],
                                                                np.ndarray]:
    """The dev renderings as frames, and frames of the dev half of the real recordings."""
    tasks = [(name, pitch, per_voice, seed) for name in VOICES for pitch in PITCHES]
    groups: list[list[str]] = []
    for kind, pattern in (dict(SPEECH_GLOBS) | dict(MUSIC_GLOBS)).items():
        paths = [p for _, p in recordings({kind: pattern}, "dev")]
        size = 100 if kind in SPEECH_GLOBS else 1
        groups += [paths[j:j + size] for j in range(0, len(paths), size)]
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        real = pool.map_async(_recording_frames, groups, chunksize=1)
        rows = [r for part in pool.map(_voice_frames, tasks, chunksize=1) for r in part]
        frames = real.get()
    print(f"real negatives: {sum(map(len, frames))} frames", flush=True)
    return rows, np.concatenate(frames)


def split(rows: list[dict[str, object]], groups: set[str]) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = [], []
    for r in rows:
        if r["group"] not in groups:
            continue
        feats = r["feats"]
        assert isinstance(feats, np.ndarray)
        k = int(r["peak"])  # type: ignore[call-overload]
        if r["kind"] == "wake":
            if k >= 0:
                pos.append(feats[max(0, k - 1):k + 3])
            neg.append(feats[[i for i in range(len(feats)) if abs(i - k) > 8]][::2])
        else:
            neg.append(feats[::2])
    return np.concatenate(pos), np.concatenate(neg)


def held_out_threshold(rows: list[dict[str, object]], real: np.ndarray, l2: float,
                       near_goal: float) -> tuple[float, dict[str, object]]:
    groups = sorted({str(r["group"]) for r in rows})
    wake_p: dict[float | None, list[float]] = {s: [] for s in SNRS}
    near_p: list[float] = []
    for held in groups:
        pos, neg = split(rows, set(groups) - {held})
        verifier = Verifier.train(pos, np.concatenate([neg, real]), l2=l2)
        for r in rows:
            if r["group"] != held:
                continue
            best = float(verifier.probabilities(r["feats"]).max())  # type: ignore[arg-type]
            if r["kind"] == "wake":
                wake_p[r["snr"]].append(best)  # type: ignore[index]
            elif r["snr"] is None:
                near_p.append(best)
    near = np.array(near_p)
    threshold = next(t for t in np.arange(0.05, 1.0, 0.01) if np.mean(near >= t) <= near_goal)
    report = {"held_out_recall": {("clean" if s is None else f"{s:g} dB"):
                                  round(float(np.mean(np.array(v) >= threshold)), 3)
                                  for s, v in wake_p.items()},
              "held_out_near_miss_rate": round(float(np.mean(near >= threshold)), 3)}
    return round(float(threshold), 2), report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-voice", type=int, default=16)
    ap.add_argument("--l2", type=float, default=100.0)
    ap.add_argument("--near-goal", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--cache", default="", help="keep the rendered frames in this file, and "
                    "reuse them (to try other settings)")
    ap.add_argument("--out", default="heisenberg/voice/verifiers/hey_jarvis.npz")
    args = ap.parse_args()
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        with cache.open("rb") as f:
            rows, real = pickle.load(f)
    else:
        rows, real = dev_data(args.per_voice, args.seed, args.procs)
        if cache is not None:
            with cache.open("wb") as f:
                pickle.dump((rows, real), f)
    threshold, report = held_out_threshold(rows, real, args.l2, args.near_goal)
    pos, neg = split(rows, {str(r["group"]) for r in rows})
    info = {"trained": datetime.date.today().isoformat(), "by": "bench/train_verifier.py",
            "voices": sorted({str(r["group"]) for r in rows}), "pitches": list(PITCHES),
            "positives": len(pos), "negatives": len(neg) + len(real), "l2": args.l2,
            "threshold_rule": f"held-out near misses <= {args.near_goal:.0%}", **report}
    verifier = Verifier.train(pos, np.concatenate([neg, real]), l2=args.l2,
                              threshold=threshold, info=info)
    verifier.save(Path(args.out))
    print(json.dumps({"threshold": threshold, **info}, indent=2))


if __name__ == "__main__":
    main()
