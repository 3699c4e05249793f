"""Train the wake word's acoustic check (heisenberg/voice/verifiers/hey_jarvis.whisper.npz).

    python bench/train_wake_check.py [--per-voice 24] [--cache FILE] [--out PATH]

Stage 3 of the wake word: whisper's encoder (tiny.en, already loaded for the questions) on
the last 2 s of audio, averaged into ten 200 ms blocks (``WhisperSTT.phrase_features``), and
a classifier with one hidden layer on them (``Verifier``), which says whether the audio ends
with the wake phrase. Whisper's encoder was trained on many more voices and much more noise
than openWakeWord's speech embedding; its decoder, asked for words, rarely writes the name
"Jarvis" ("Jarpus", "Jardis", "HRvis"), but the encoder's frames tell it from "Jervis".

Only ``dev`` material (bench/speech_sets.py): the dev voices, each also pitch-shifted
(0.9, 1.1), saying the wake phrase alone or followed by a question, near misses, and other
sentences, clean and over the dev half of the real noise at 10 and 5 dB; windows ending
``DELTAS`` after the phrase (when the check is asked: 160 ms after the verifier's first
doubt, or when the candidate ends). Negatives: those windows for near misses and other
sentences, 2 s windows of the dev half of the real recordings (asterisk prompts in four
languages, music), and the windows stage 3 is asked about in them ("mined": the dev half's
prompts, music, and prompts over music, through the daemon's first two stages, then
``--radio-variants`` more passes of those prompts over other dev music). Without the mined
ones, the classifier confirmed 3 candidates in 8.4 h of the test half (prompts over music),
and with the first pass alone still 3.

The threshold is chosen by leave-one-voice-out: each dev voice (with its pitch variants) is
held out in turn; the threshold is the lowest of ``GRID`` at which held-out near misses pass
at most ``--near-goal`` of the time, clean and at 10 dB, held-out real windows at most
``--real-goal`` and held-out mined windows at most ``--mined-goal``. It also reports what
whisper's words (the earlier transcript check) hear of the same windows. The test voices are
never looked at: bench/wakeword.py measures on them."""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import pickle
import zlib
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
from train_verifier import NEAR, QUESTIONS, WAKE
from wakeword import _whisper, negative_segments, segment_audio, voiced_end

from heisenberg.audio.format import RATE_HZ, chunks_of
from heisenberg.core.config import WakeWordConfig
from heisenberg.voice.stt import phrase_transcriber
from heisenberg.voice.verifier import Verifier
from heisenberg.voice.wakeword import (
    CHECK_AUDIO_S,
    OpenWakeWordEngine,
    PhraseCheck,
    phrase_heard,
)

OTHER = ["What time is it?", "Turn on the light.", "How are you today?", "Hey, how are you?",
         "Hey there, what is the weather?", "I was talking to Harvey yesterday.",
         "Travis and Jack are here.", "Hey, can you hear me?"]
"""Sentences without the wake word (some with "hey", some with near names)."""
PITCHES = (1.0, 0.9, 1.1)
DELTAS = (0.05, 0.15, 0.25, 0.4, 0.6)
"""Where a window ends after the phrase's last voiced sample (seconds)."""
MEASURED = (0.15, 0.25)
"""The windows the held-out figures count: when the check is mostly asked."""
SNRS = (None, 10.0, 5.0)
GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)
WINDOW = int(CHECK_AUDIO_S * RATE_HZ)


def _voice_rows(task: tuple[str, float, int, int, bool]) -> list[dict[str, object]]:
    """One dev voice at one pitch: its windows, clean and in noise, as encoder blocks; the
    window ending 0.15 s after the phrase also as whisper's words (``words``)."""
    name, pitch, per_voice, seed, words = task
    base = {v.name: v for v in voices()}[name]
    voice = base if pitch == 1.0 else Voice(f"{name}@{pitch}", "dev",
                                            pitch_shift(base.render, pitch))
    rng = np.random.default_rng([seed, zlib.crc32(voice.name.encode())])
    bank = noise_bank(60.0, split="dev")
    stt = _whisper()
    transcribe = phrase_transcriber(stt)
    rows: list[dict[str, object]] = []
    before = after = RATE_HZ
    for kind, phrases, n in (("wake", WAKE, per_voice), ("near", NEAR, len(NEAR)),
                             ("other", OTHER, len(OTHER))):
        for i in range(n):
            said = voice.render(phrases[i % len(phrases)], rng)
            said = said[:voiced_end(said)]
            end = before + len(said)
            question = QUESTIONS[i % len(QUESTIONS)] if kind == "wake" else ""
            if question:
                pause = np.zeros(int(rng.uniform(0.08, 0.3) * RATE_HZ), np.int16)
                said = np.concatenate([said, pause, voice.render(question, rng)])
            for snr in SNRS:
                audio = (np.concatenate([np.zeros(before, np.int16), said,
                                         np.zeros(after, np.int16)]) if snr is None
                         else mix(said, bank[sorted(bank)[int(rng.integers(len(bank)))]],
                                  snr, rng, before, after))
                for delta in DELTAS:
                    stop = end + int(delta * RATE_HZ)
                    clip = audio[max(0, stop - WINDOW):stop]
                    row: dict[str, object] = {
                        "group": name, "pitch": pitch, "kind": kind, "snr": snr,
                        "delta": delta, "feats": stt.phrase_features(clip).astype(np.float16)}
                    if words and delta == 0.15 and transcribe is not None:
                        row["words"] = transcribe(clip)
                    rows.append(row)
    print(f"{voice.name}: {len(rows)} windows", flush=True)
    return rows


def _real_rows(paths: list[str]) -> list[np.ndarray]:
    """2 s windows of real recordings, one per 6 s (at most the first 120 s of each file)."""
    rng = np.random.default_rng(zlib.crc32(paths[0].encode()))
    stt = _whisper()
    out = []
    for path in paths:
        audio = load(path)[:int(120 * RATE_HZ)]
        for _ in range(len(audio) // (6 * RATE_HZ) if len(audio) >= WINDOW else 0):
            start = int(rng.integers(0, len(audio) - WINDOW + 1))
            out.append(stt.phrase_features(audio[start:start + WINDOW]).astype(np.float16))
    return out


MINE_GATE = 0.001
"""Mining: the verifier's probability (``check_threshold``) at which a candidate's window is
kept as a negative; lower than the daemon's 0.1, for more of them (at 0.01, the prompts
alone and over music gave 99)."""


RADIO_BEDS_DB = (3.0, 10.0, 0.0, 6.0, 3.0, 10.0)
"""``--radio-variants``: how far below the prompts the music is in each further pass of the
dev half's prompts over music (the benchmark's own mix has it 6 dB below)."""


def radio_variants(split: str, passes: int
                   ) -> list[tuple[tuple[str, list[str], list[str]], float]]:
    """More prompts-over-music segments than ``negative_segments`` has: each further pass lays
    every group of 100 prompts over another track of the same half, at ``RADIO_BEDS_DB``."""
    out = []
    radio = [s for s in negative_segments(split) if s[0].startswith("radio:")]
    music = [p for _, p in recordings(MUSIC_GLOBS, split)]
    for k in range(1, passes + 1):
        for n, (kind, paths, tracks) in enumerate(radio):
            track = music[(music.index(tracks[0]) + 17 * k + n) % len(music)]
            out.append(((f"{kind}+{k}", paths, [track]),
                        RADIO_BEDS_DB[(k - 1) % len(RADIO_BEDS_DB)]))
    return out


def _mined_rows(task: tuple[tuple[str, list[str], list[str]], float]) -> list[np.ndarray]:
    """The windows stage 3 would be asked about in a stream of real recordings (the dev
    half: prompts, music, prompts over music): the engine as the daemon has it, the check's
    gate at ``MINE_GATE``, the check itself replaced by keeping its window."""
    segment, bed_db = task
    stt = _whisper()
    out: list[np.ndarray] = []

    def keep(audio: np.ndarray) -> str:
        out.append(stt.phrase_features(audio).astype(np.float16))
        return ""

    engine = OpenWakeWordEngine(WakeWordConfig(check_threshold=MINE_GATE, acoustic_check=False))
    engine.phrase_check = PhraseCheck(transcribe=keep)
    try:
        for chunk in chunks_of(segment_audio(segment, bed_db)):
            engine.process(chunk)
    finally:
        engine.close()
    return out


def dev_data(per_voice: int, seed: int, procs: int, words: bool
             ) -> tuple[list[dict[str, object]], np.ndarray]:
    names = [v.name for v in voices() if v.split == "dev"]
    tasks = [(name, pitch, per_voice, seed, words) for name in names for pitch in PITCHES]
    groups: list[list[str]] = []
    for kind, pattern in (dict(SPEECH_GLOBS) | dict(MUSIC_GLOBS)).items():
        paths = [p for _, p in recordings({kind: pattern}, "dev")]
        if kind in SPEECH_GLOBS:  # prompts are short: 240 of each language
            groups += [paths[j:j + 60] for j in range(0, min(len(paths), 240), 60)]
        else:
            groups += [[p] for p in paths]
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        real = pool.map_async(_real_rows, groups, chunksize=1)
        rows = [r for part in pool.map(_voice_rows, tasks, chunksize=1) for r in part]
        windows = [x for part in real.get() for x in part]
    print(f"real negatives: {len(windows)} windows", flush=True)
    return rows, np.stack(windows)


def mined_data(procs: int, passes: int = 0) -> np.ndarray:
    """Mined windows of the dev half's segments (``passes`` 0), or of ``passes`` further
    passes of its prompts over music (``radio_variants``)."""
    tasks = radio_variants("dev", passes) if passes else [
        (s, 6.0) for s in negative_segments("dev")]
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        windows = [x for part in pool.map(_mined_rows, tasks, chunksize=1) for x in part]
    print(f"mined negatives: {len(windows)} windows", flush=True)
    return np.stack(windows)


def _arrays(rows: list[dict[str, object]]) -> dict[str, np.ndarray]:
    return {"x": np.stack([np.asarray(r["feats"], np.float32) for r in rows]),
            "group": np.array([r["group"] for r in rows]),
            "kind": np.array([r["kind"] for r in rows]),
            "snr": np.array([-1.0 if r["snr"] is None else float(r["snr"])  # type: ignore[arg-type]
                             for r in rows]),
            "delta": np.array([r["delta"] for r in rows], float)}


def fit(x: np.ndarray, positive: np.ndarray, real: np.ndarray, units: int, decay: float,
        epochs: int, threshold: float = 0.5, info: dict[str, object] | None = None
        ) -> Verifier:
    return Verifier.train_hidden(x[positive], np.concatenate([x[~positive], real]),
                                 units=units, decay=decay, epochs=epochs,
                                 threshold=threshold, info=info)


def held_out(rows: list[dict[str, object]], real: np.ndarray, mined: np.ndarray, units: int,
             decay: float, epochs: int
             ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Each window's probability from the classifier trained without its voice; half of the
    real windows and half of the mined ones, scored by each of those classifiers (trained
    on the other halves): one row per classifier."""
    a = _arrays(rows)
    prob = np.zeros(len(rows))
    halves = []
    for windows in (real, mined):
        order = np.random.default_rng(0).permutation(len(windows))
        halves.append((windows[order[:len(windows) // 2]], windows[order[len(windows) // 2:]]))
    (train_real, test_real), (train_mined, test_mined) = halves
    real_prob, mined_prob = [], []
    for voice in sorted(set(a["group"])):
        out = a["group"] == voice
        net = fit(a["x"][~out], a["kind"][~out] == "wake",
                  np.concatenate([train_real, train_mined]), units, decay, epochs)
        prob[out] = net.probabilities(a["x"][out])
        real_prob.append(net.probabilities(test_real))
        mined_prob.append(net.probabilities(test_mined))
        print(f"held out {voice}", flush=True)
    return a, prob, np.stack(real_prob), np.stack(mined_prob)


def rates(a: dict[str, np.ndarray], passed: np.ndarray, voice: str = "",
          deltas: tuple[float, ...] = MEASURED) -> dict[str, float]:
    """The share of the windows ending ``deltas`` after the phrase that ``passed``, per kind
    and condition (of ``voice``'s alone, if given)."""
    at = np.isin(a["delta"], deltas) & ((a["group"] == voice) if voice else True)
    out = {}
    for kind, conditions in (("wake", SNRS), ("near", SNRS[:2]), ("other", SNRS[:2])):
        for snr in conditions:
            sel = at & (a["kind"] == kind) & (a["snr"] == (-1.0 if snr is None else snr))
            out[f"{kind} {'clean' if snr is None else f'{snr:g} dB'}"] = round(
                float(passed[sel].mean()), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-voice", type=int, default=24)
    ap.add_argument("--units", type=int, default=64)
    ap.add_argument("--decay", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--near-goal", type=float, default=0.02,
                    help="held-out near misses that may pass (below issue 15's 5 %: the "
                         "held-out figure was optimistic for the verifier before)")
    ap.add_argument("--real-goal", type=float, default=5e-4,
                    help="held-out 2 s windows of real recordings that may pass")
    ap.add_argument("--mined-goal", type=float, default=0.01,
                    help="held-out mined windows (what stage 3 is asked about in real "
                    "recordings) that may pass")
    ap.add_argument("--no-mined", action="store_true",
                    help="train without the mined windows (the first version: 3 false "
                    "accepts in 8.4 h, docs/VOICE.md)")
    ap.add_argument("--radio-variants", type=int, default=6,
                    help="further passes of the dev half's prompts over other music, mined "
                    "too (0: the first mined version, whose classifier woke on 3 candidates "
                    "of prompts over music in 8.4 h of the test half)")
    ap.add_argument("--no-words", action="store_true",
                    help="skip whisper's words (the comparison with the transcript check)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--cache", default="", help="keep the encoded windows in this file, "
                    "and reuse them (to try other settings; the mined windows of the "
                    "--radio-variants it was made with)")
    ap.add_argument("--out", default="heisenberg/voice/verifiers/hey_jarvis.whisper.npz")
    ap.add_argument("--results", default="bench/results/wake_check_train.json")
    args = ap.parse_args()
    cache = Path(args.cache) if args.cache else None
    data: tuple[object, ...] = ()
    if cache is not None and cache.is_file():
        with cache.open("rb") as f:
            data = pickle.load(f)
    if not data:
        data = dev_data(args.per_voice, args.seed, args.procs, not args.no_words)
    if len(data) == 2 and not args.no_mined:
        data = (*data, mined_data(args.procs))
    if len(data) == 3 and args.radio_variants:
        data = (*data, mined_data(args.procs, args.radio_variants))
    if cache is not None:
        with cache.open("wb") as f:
            pickle.dump(data, f)
    rows, real = data[0], np.asarray(data[1], np.float32)  # type: ignore[call-overload]
    mined = (np.zeros((0, real.shape[1]), np.float32) if args.no_mined
             else np.concatenate([np.asarray(m, np.float32) for m in  # type: ignore[call-overload]
                                  data[2:3 + bool(args.radio_variants)]]))
    a, prob, real_prob, mined_prob = held_out(rows, real, mined, args.units, args.decay,
                                              args.epochs)
    grid = {t: {**rates(a, prob >= t),  # the mean of the held-out classifiers' rates:
                "real windows": round(float(np.mean(real_prob >= t)), 5),
                "mined windows": round(float(np.mean(mined_prob >= t)), 4) if len(mined)
                else None} for t in GRID}
    good = [t for t, g in grid.items() if g["near clean"] <= args.near_goal
            and g["near 10 dB"] <= args.near_goal and g["real windows"] <= args.real_goal
            and (g["mined windows"] or 0.0) <= args.mined_goal]
    threshold = good[0] if good else GRID[-1]
    report: dict[str, object] = {
        "held_out_by_threshold": {str(t): v for t, v in grid.items()},
        "held_out_per_voice": {v: rates(a, prob >= threshold, v)
                               for v in sorted(set(a["group"]))},
        "held_out_wake_by_delta_s": by_delta(a, prob >= threshold)}
    words = [r.get("words") for r in rows]
    if any(w is not None for w in words):
        has = np.array([w is not None for w in words])
        heard = np.array([w is not None and phrase_heard("hey_jarvis", str(w)) for w in words])
        sub = {k: v[has] for k, v in a.items()}
        report["words_alone_at_0.15_s"] = rates(sub, heard[has], deltas=(0.15,))
        report["classifier_alone_at_0.15_s"] = rates(sub, (prob >= threshold)[has],
                                                      deltas=(0.15,))
        report["either_at_0.15_s"] = rates(sub, heard[has] | (prob >= threshold)[has],
                                          deltas=(0.15,))
    x = a["x"]
    info = {"trained": datetime.date.today().isoformat(), "by": "bench/train_wake_check.py",
            "features": "whisper tiny.en encoder, last 2 s, 10 blocks of 200 ms",
            "voices": sorted(set(a["group"])), "pitches": list(PITCHES),
            "deltas_s": list(DELTAS), "windows": len(x), "real_windows": len(real),
            "mined_windows": len(mined), "mine_gate": MINE_GATE,
            "radio_variants": args.radio_variants, "radio_beds_db": list(RADIO_BEDS_DB),
            "hidden_units": args.units, "weight_decay": args.decay, "epochs": args.epochs,
            "threshold_rule": f"held-out near misses <= {args.near_goal:.0%} clean and at "
                              f"10 dB, real windows <= {args.real_goal}, mined windows <= "
                              f"{args.mined_goal}"}
    net = fit(x, a["kind"] == "wake", np.concatenate([real, mined]), args.units, args.decay,
              args.epochs, threshold, info)
    net.save(Path(args.out))
    out = {"threshold": threshold, **info, **report}
    Path(args.results).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


def by_delta(a: dict[str, np.ndarray], passed: np.ndarray) -> dict[str, dict[str, float]]:
    """Held-out phrases heard, by where the window ends after the phrase (how early the
    check may be asked)."""
    return {f"{d:g}": {k.removeprefix("wake "): v for k, v in rates(a, passed, deltas=(d,)).items()
                       if k.startswith("wake ")} for d in DELTAS}


if __name__ == "__main__":
    main()
