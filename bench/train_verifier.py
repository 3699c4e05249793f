"""Train the bundled wake word verifier (heisenberg/voice/verifiers/hey_jarvis.npz).

    python bench/train_verifier.py [--per-voice 16] [--out PATH]

Only ``dev`` material is used (bench/speech_sets.py): the dev voices, each also
pitch-shifted four ways (0.88-1.13: a smaller or larger speaker), saying the wake phrase
alone or followed by a question, clean and over real recorded noise at 10 and 5 dB (the
dev half of the noise files: the benchmarks mix over the other half); the dev half of the
real recordings (asterisk prompts in four languages, music) as negatives. Positives are the
frames from the end of the wake phrase to just after the model's peak on the clean
rendering (the same frames of the noisy copies): the verifier learns to decide as soon as
the phrase is over. Negatives: the frames before the phrase is complete and well after it,
every frame of the near misses, and frames of the real recordings.

The threshold written into the file is chosen by leave-one-voice-out: each dev voice (with
its pitch variants) is held out in turn, a verifier trained on the others scores it, and
the threshold is the lowest at which the held-out near misses wake it at most 5 % of the
time, clean and at 10 dB. The test voices are never looked at: bench/wakeword.py measures
on them.
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
    gender_shift,
    kokoro_voices,
    load,
    mix,
    noise_bank,
    pitch_shift,
    recordings,
    voices,
)
from wakeword import voiced_end

from heisenberg.audio.format import RATE_HZ
from heisenberg.enroll import Embedder
from heisenberg.voice.verifier import Verifier

WAKE = ["Hey Jarvis.", "Hey, Jarvis.", "Hey Jarvis!", "Hey Jarvis"]
QUESTIONS = ["", "What time is it?", "Turn on the light.", "How are you today?",
             "What's the weather like?", "Set a timer for five minutes."]
NEAR = ["Hey Java developers.", "Hey Travis.", "Hey Harvey.", "Hey Jervis.", "Hey Marvin.",
        "Jarvis.", "Hey Charlie.", "Hey, Davis.", "Hey service.", "Hey, nervous?",
        "Hey Jack, it is.", "Jarvis is a name.", "Harvest.", "Hey Jarrod."]
PITCHES = (1.0, 0.88, 0.95, 1.06, 1.13)
GENDER = ((1.12, 170.0), (1.18, 210.0))
"""``--gender``: the men's dev voices (``MEN``) also with their formants and median pitch
raised (``gender_shift``), as women would say it: the test voices' misses in noise are
mostly women's (flite and festival slt, pico en-GB: F0 156-175 Hz)."""
MEN = ("piper-joe", "flite-kal16", "flite-awb", "festival-kal", "mbrola-us3")
SNRS = (None, 10.0, 5.0)
"""Every rendering is kept clean and mixed at these; the held-out figures are given for them."""
EXTRA_SNR_DB = (0.0, 20.0)
"""Range of the SNRs of the extra noisy copies (``--extra-noisy``), for training only."""


def _voice_frames(task: tuple[str, float | tuple[float, float], int, int, int, float]
                  ) -> list[dict[str, object]]:
    """One dev voice at one pitch (a tape factor, or ``GENDER``'s formants and pitch): its
    renderings, clean and in noise, as frames. A wake phrase is rendered alone, then its
    question after a short pause, so that the frame at which the phrase ends is known
    (``end``: the first frame decided after its last voiced sample). ``extra`` more noisy
    copies of each, at SNRs drawn from ``EXTRA_SNR_DB`` (``extra: True`` rows: trained on,
    not in the held-out figures), over ``noise_s`` seconds of each kind of dev noise."""
    name, pitch, per_voice, seed, extra, noise_s = task
    base = {v.name: v for v in [*voices(), *kokoro_voices()]}[name]
    if isinstance(pitch, tuple):
        voice = Voice(f"{name}~{pitch[0]}@{pitch[1]:g}Hz", "dev",
                      gender_shift(base.render, *pitch))
        variant = len(PITCHES) + GENDER.index(pitch)
    else:
        voice = base if pitch == 1.0 else Voice(f"{name}@{pitch}", "dev",
                                                pitch_shift(base.render, pitch))
        variant = PITCHES.index(pitch)
    rng = np.random.default_rng([seed, variant,
                                 [*sorted(VOICES), *KOKORO].index(name)])
    bank = noise_bank(noise_s, split="dev")
    embed = Embedder("hey_jarvis")
    rows: list[dict[str, object]] = []
    before, after = np.zeros(RATE_HZ, np.int16), np.zeros(RATE_HZ // 2, np.int16)
    for kind, phrases, n in (("wake", WAKE, per_voice), ("near", NEAR, len(NEAR))):
        for i in range(n):
            said = voice.render(phrases[i % len(phrases)], rng)
            said = said[:voiced_end(said)]
            end_s = (len(before) + len(said)) / RATE_HZ
            question = QUESTIONS[i % len(QUESTIONS)] if kind == "wake" else ""
            if question:
                pause = np.zeros(int(rng.uniform(0.08, 0.3) * RATE_HZ), np.int16)
                said = np.concatenate([said, pause, voice.render(question, rng)])
            peak = None
            extras = [float(rng.uniform(*EXTRA_SNR_DB)) for _ in range(extra)]
            for j, snr in enumerate([*SNRS, *extras]):
                audio = np.concatenate([before, said, after]) if snr is None else mix(
                    said, bank[sorted(bank)[int(rng.integers(len(bank)))]], snr, rng,
                    len(before), len(after))
                scores, feats = embed(audio, pad=False)
                # frame j is decided at the end of chunk j + lead (the model's warm-up)
                lead = len(range(0, len(audio) - 1279, 1280)) - len(scores)
                end = max(0, int(np.ceil(end_s / 0.08)) - 1 - lead)
                if peak is None:
                    peak = int(np.argmax(scores)) if scores.max() >= 0.2 else -1
                rows.append({"group": name, "kind": kind, "snr": snr, "peak": peak,
                             "end": end, "extra": j >= len(SNRS),
                             "gender": isinstance(pitch, tuple),
                             "feats": feats.astype(np.float32)})
    embed.close()
    print(f"{voice.name}: {len(rows)} clips", flush=True)
    return rows


def _recording_frames(paths: list[str], step: int = 6, most_s: float = 360.0) -> np.ndarray:
    """Frames of real recordings played back to back (every ``step``-th frame; at most the
    first ``most_s`` seconds of each file)."""
    embed = Embedder("hey_jarvis")
    gap = np.zeros(4000, np.int16)
    audio = [x for p in paths for x in (load(p)[:int(most_s * RATE_HZ)], gap)]
    _, feats = embed(np.concatenate(audio), pad=False)
    embed.close()
    return feats[::step].astype(np.float32)


VOICES = [v.name for v in voices() if v.split == "dev"]
KOKORO = [v.name for v in kokoro_voices()]


def gender_data(per_voice: int, seed: int, procs: int, extra: int = 0,
                noise_s: float = 60.0) -> list[dict[str, object]]:
    """The ``GENDER`` variants of the men's dev voices, as frames."""
    tasks = [(name, variant, per_voice, seed, extra, noise_s)
             for name in MEN for variant in GENDER]
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        return [r for part in pool.map(_voice_frames, tasks, chunksize=1) for r in part]


def dev_data(per_voice: int, seed: int, procs: int, extra: int = 0, noise_s: float = 60.0,
             kokoro: bool = False) -> tuple[list[dict[str, object]], np.ndarray]:
    """The dev renderings as frames, and frames of the dev half of the real recordings
    (``kokoro``: Kokoro's voices too)."""
    tasks: list[tuple[str, float | tuple[float, float], int, int, int, float]] = [
        (name, pitch, per_voice, seed, extra, noise_s)
        for name in VOICES + KOKORO * kokoro for pitch in PITCHES]
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
        k, end = int(r["peak"]), int(r["end"])  # type: ignore[call-overload]
        if r["kind"] == "wake":
            # positive from just after the end of the phrase (decide early) to just after
            # the model's peak; negative before the phrase is complete and well after it.
            # One frame after ``end``, not ``end`` itself: on the dev voices (held out one
            # at a time) starting at ``end`` let more near misses through for the same recall.
            start = end + 1
            stop = max(k, start) + 3
            if k >= 0:
                pos.append(feats[start:stop])
            neg.append(feats[[i for i in range(len(feats)) if i < end - 2 or i > stop + 8]][::2])
        else:
            neg.append(feats[::2])
    return np.concatenate(pos), np.concatenate(neg)


def fit(pos: np.ndarray, neg: np.ndarray, units: int, decay: float,
        threshold: float = 0.5, info: dict[str, object] | None = None,
        epochs: int = 10, members: int = 1) -> Verifier:
    return Verifier.train_hidden(pos, neg, units=units, decay=decay, threshold=threshold,
                                 info=info, epochs=epochs, members=members)


def held_out_threshold(rows: list[dict[str, object]], real: np.ndarray, units: int,
                       decay: float, near_goal: float, epochs: int = 10, members: int = 1
                       ) -> tuple[float, dict[str, object]]:
    """The lowest threshold at which held-out near misses wake it at most ``near_goal`` of
    the time, clean and at 10 dB each; and what that threshold gives on the held-out voices
    (recall by condition, the frames from the phrase's end to the decision)."""
    groups = sorted({str(r["group"]) for r in rows})
    wake_p: dict[float | None, list[float]] = {s: [] for s in SNRS}
    by_voice: dict[str, dict[float | None, list[float]]] = {g: {s: [] for s in SNRS}
                                                            for g in groups}
    near_p: dict[float | None, list[float]] = {s: [] for s in SNRS}
    clean_runs: list[tuple[np.ndarray, int]] = []
    for held in groups:
        pos, neg = split(rows, set(groups) - {held})
        verifier = fit(pos, np.concatenate([neg, real]), units, decay, epochs=epochs,
                       members=members)
        for r in rows:
            if r["group"] != held or r.get("extra") or r.get("gender"):
                continue
            probs = verifier.probabilities(r["feats"])  # type: ignore[arg-type]
            if r["kind"] == "wake":
                wake_p[r["snr"]].append(float(probs.max()))  # type: ignore[index]
                by_voice[held][r["snr"]].append(float(probs.max()))  # type: ignore[index]
                if r["snr"] is None:
                    clean_runs.append((probs, int(r["end"])))  # type: ignore[call-overload]
            else:
                near_p[r["snr"]].append(float(probs.max()))  # type: ignore[index]
    near = {s: np.array(v) for s, v in near_p.items()}
    threshold = next(t for t in np.arange(0.05, 1.0, 0.005)
                     if max(np.mean(near[None] >= t), np.mean(near[10.0] >= t)) <= near_goal)
    late = [int(np.argmax(p >= threshold)) - end for p, end in clean_runs
            if (p >= threshold).any()]

    def cond(s: float | None) -> str:
        return "clean" if s is None else f"{s:g} dB"

    report = {"held_out_recall": {cond(s): round(float(np.mean(np.array(v) >= threshold)), 3)
                                  for s, v in wake_p.items()},
              "held_out_recall_by_voice": {
                  g: {cond(s): round(float(np.mean(np.array(v) >= threshold)), 3)
                      for s, v in by.items()} for g, by in by_voice.items()},
              "held_out_near_miss_rate": {cond(s): round(float(np.mean(v >= threshold)), 3)
                                          for s, v in near.items()},
              "held_out_frames_after_phrase_end": {
                  "median": float(np.median(late)), "p90": float(np.percentile(late, 90))}}
    return round(float(threshold), 2), report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-voice", type=int, default=16)
    ap.add_argument("--units", type=int, default=64, help="hidden units")
    ap.add_argument("--decay", type=float, default=1e-3, help="weight decay")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--near-goal", type=float, default=0.05)
    ap.add_argument("--extra-noisy", type=int, default=0,
                    help="more noisy copies of each rendering, for training only")
    ap.add_argument("--noise-seconds", type=float, default=60.0,
                    help="seconds of each kind of dev noise to mix from")
    ap.add_argument("--no-extra", action="store_true",
                    help="train without the extra copies (even when the cache has them)")
    ap.add_argument("--kokoro", action="store_true",
                    help="add Kokoro's five voices (bench/install-data) to the dev voices "
                         "(tried and not kept: docs/VOICE.md)")
    ap.add_argument("--members", type=int, default=1,
                    help="networks (seeds) whose log-odds are averaged in the verifier "
                         "(with --gender: tried and not kept, docs/VOICE.md)")
    ap.add_argument("--gender", action="store_true",
                    help="add the men's dev voices made to sound like women's (GENDER; tried "
                         "and not kept: docs/VOICE.md)")
    ap.add_argument("--hold-out", default="", metavar="VOICE",
                    help="train without this dev voice (to measure a later stage on a voice "
                         "the verifier does not know: bench/wakeword.py --voice VOICE)")
    ap.add_argument("--threshold", type=float, default=0.0,
                    help="use this threshold instead of choosing one by leave-one-voice-out")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--cache", default="", help="keep the rendered frames in this file, and "
                    "reuse them (to try other settings)")
    ap.add_argument("--out", default="heisenberg/voice/verifiers/hey_jarvis.npz")
    args = ap.parse_args()
    cache = Path(args.cache) if args.cache else None
    rendered = False
    if cache is not None and cache.is_file():
        with cache.open("rb") as f:
            rows, real = pickle.load(f)
    else:
        rows, real = dev_data(args.per_voice, args.seed, args.procs, args.extra_noisy,
                              args.noise_seconds, args.kokoro)
        rendered = True
    if args.gender and not any(r.get("gender") for r in rows):
        rows += gender_data(args.per_voice, args.seed, args.procs, args.extra_noisy,
                            args.noise_seconds)
        rendered = True
    if cache is not None and rendered:
        with cache.open("wb") as f:
            pickle.dump((rows, real), f)
    if not args.gender:
        rows = [r for r in rows if not r.get("gender")]
    if args.no_extra:
        rows = [r for r in rows if not r.get("extra")]
    if args.hold_out:
        rows = [r for r in rows if r["group"] != args.hold_out]
    if args.threshold:
        threshold, report = args.threshold, {}
    else:
        threshold, report = held_out_threshold(rows, real, args.units, args.decay,
                                               args.near_goal, args.epochs, args.members)
    pos, neg = split(rows, {str(r["group"]) for r in rows})
    info = {"trained": datetime.date.today().isoformat(), "by": "bench/train_verifier.py",
            "voices": sorted({str(r["group"]) for r in rows}), "pitches": list(PITCHES),
            "gender_variants": [list(g) for g in GENDER] if args.gender else [],
            "positives": len(pos), "negatives": len(neg) + len(real),
            "hidden_units": args.units, "members": args.members,
            "weight_decay": args.decay, "epochs": args.epochs,
            "extra_noisy_copies": 0 if args.no_extra else args.extra_noisy,
            "extra_snr_db": list(EXTRA_SNR_DB), "noise_seconds_each": args.noise_seconds,
            "threshold_rule": f"held-out near misses <= {args.near_goal:.0%}, clean and 10 dB",
            **report}
    verifier = fit(pos, np.concatenate([neg, real]), args.units, args.decay, threshold, info,
                   args.epochs, args.members)
    verifier.save(Path(args.out))
    print(json.dumps({"threshold": threshold, **info}, indent=2))


if __name__ == "__main__":
    main()
