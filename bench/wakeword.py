"""Benchmark: the wake word as the daemon runs it, on voices and recordings it was not tuned on.

    python bench/wakeword.py [--per-voice 20] [--procs 2] [--out bench/results/wakeword.json]

The engine is the daemon's, with the default config: the webrtcvad gate, openWakeWord's
model (stage 1) and the bundled verifier (stage 2), fed 80 ms chunks of one stream.

- Wake phrases: every voice of ``speech_sets.voices()`` (flite, festival, SVOX Pico,
  MBROLA, Piper's joe with its sampling noise, pitch-shifted copies; ``dev`` voices are the
  ones the verifier was trained on, ``test`` voices were never used to choose anything)
  says "Hey Jarvis" then a question, ``--per-voice`` times, clean and over real recorded
  noise (music, machines, babble of other languages) at 10 and 5 dB, the noise running
  before and after. False reject rate per voice and condition, and the time from the end
  of the wake phrase (its last voiced sample, known from the synthesized audio) to the
  decision, in audio time.
- Near misses ("Hey Travis", "Jarvis" alone, "Hey Java developers", ...) by every voice,
  clean and at 10 dB: how often they wake it.
- False accepts per hour on real recordings only: the test half of Debian's asterisk
  prompts in Spanish, Italian, French and Russian and the test half of the music (asterisk
  music on hold, seven game soundtracks): the dev halves are the verifier's negatives; and
  radio-like mixes of that speech over that music; with the 95 % upper bound of the rate (Poisson).
- CPU per 80 ms chunk of each stage, and the idle cost in a quiet room.

espeak-ng voices, Debian's English asterisk prompts, pocketsphinx's LibriVox clips and
whisper's JFK sample are an independent evaluation: never used here.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import math
import multiprocessing
import os
import platform
import time
import zlib
from pathlib import Path

import numpy as np
from common import run, summary
from speech_sets import (
    MUSIC_GLOBS,
    SPEECH_GLOBS,
    load,
    mix,
    noise_bank,
    recordings,
    voices,
)

from heisenberg.audio.format import RATE_HZ, chunks_of
from heisenberg.core.config import STTConfig, WakeWordConfig
from heisenberg.voice.stt import WhisperSTT, add_transcript_check
from heisenberg.voice.vad import WebRtcVad
from heisenberg.voice.verifier import Verifier, with_bundled_gate
from heisenberg.voice.wakeword import Detection, OpenWakeWordEngine, VadGatedWakeWord

QUESTIONS = ["What time is it?", "Turn on the light.", "How are you today?",
             "What's the weather like?", "Set a timer for five minutes.", ""]
WAKE = ["Hey Jarvis", "Hey, Jarvis", "Hey Jarvis!"]
NEAR = ["Hey Java developers.", "Hey Travis.", "Hey Harvey.", "Hey Jervis.", "Hey Marvin.",
        "Jarvis.", "Hey Charlie.", "Hey, Davis.", "Hey service.", "Hey, nervous?",
        "Hey Jack, it is."]
CONDITIONS: list[float | None] = [None, 10.0, 5.0]


def daemon_engine() -> VadGatedWakeWord:
    """The wake word engine exactly as ``load_voice_engines`` builds it by default (with
    ``--verifier``: another verifier, to try one on the dev voices before bundling it)."""
    trial = os.environ.get("BENCH_WAKE_VERIFIER")
    verifiers = {"hey_jarvis": Verifier.load(Path(trial))} if trial else None
    config = bench_config()
    inner = OpenWakeWordEngine(config, verifiers=verifiers)
    acoustic = os.environ.get("BENCH_WAKE_ACOUSTIC", "")
    for listener in inner._listeners:
        if acoustic not in ("", "on", "off"):
            listener.acoustic = Verifier.load(Path(acoustic), size=None)
    if config.check_threshold:
        add_transcript_check(inner, _whisper())
    return VadGatedWakeWord(inner, WebRtcVad(STTConfig().vad_aggressiveness).any_speech)


def bench_config() -> WakeWordConfig:
    """The default config, with ``--check-threshold`` if given (for tuning on dev voices)."""
    config = WakeWordConfig()
    if os.environ.get("BENCH_WAKE_CHECK"):
        config = dataclasses.replace(config, check_threshold=float(os.environ["BENCH_WAKE_CHECK"]))
    if os.environ.get("BENCH_WAKE_ACOUSTIC"):
        config = dataclasses.replace(config,
                                     acoustic_check=os.environ["BENCH_WAKE_ACOUSTIC"] != "off")
    if os.environ.get("BENCH_WAKE_WORDS"):
        config = dataclasses.replace(config, check_words=os.environ["BENCH_WAKE_WORDS"] == "on")
    return config


@functools.cache
def _whisper() -> WhisperSTT:
    """The transcript check's whisper: the daemon's (tiny.en), or ``--check-model``'s."""
    other = os.environ.get("BENCH_WAKE_CHECK_MODEL")
    return WhisperSTT(STTConfig(model_path=other, language="en") if other else STTConfig())


class Stream:
    """One continuous stream through an engine; audio time keeps running across clips."""

    def __init__(self) -> None:
        self.engine = daemon_engine()
        self.clock_ms = 0
        self.cpu_s = 0.0
        self.chunks = 0

    def feed(self, pcm: np.ndarray) -> list[Detection]:
        """Each detection, its ``audio_ms`` from the clip start."""
        start = self.clock_ms
        out = []
        for chunk in chunks_of(pcm, start_ms=start):
            t = time.process_time()
            found = self.engine.process(chunk)
            self.cpu_s += time.process_time() - t
            self.chunks += 1
            if found is not None:
                out.append(dataclasses.replace(found, audio_ms=found.audio_ms - start))
            self.clock_ms = chunk.timestamp_ms + int(chunk.duration_ms)
        return out


def voiced_end(samples: np.ndarray) -> int:
    """Index just after the last sample above -40 dB of the peak."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > np.abs(samples).max() * 0.01)
    return int(loud[-1]) + 1 if len(loud) else len(samples)


def measure_positives(per_voice: int, seed: int, split: str = "all", noise_split: str = "test",
                      only: str = "") -> tuple[list[dict[str, object]], Stream]:
    """Each voice draws from its own generator (the seed and its name): a voice's phrases,
    speeds and noise are the same whichever other voices run (``--split``, ``--voice``, a
    voice added to the dev set), so two verifiers can be compared on the same audio."""
    bank = noise_bank(split=noise_split)
    stream = Stream()
    rows: list[dict[str, object]] = []
    gap = np.zeros(int(0.15 * RATE_HZ), np.int16)
    for voice in voices():
        if (split != "all" and voice.split != split) or only and voice.name != only:
            continue
        rng = np.random.default_rng([seed, zlib.crc32(voice.name.encode())])
        for i in range(per_voice):
            wake = voice.render(WAKE[i % len(WAKE)] + ("." if i % 2 else ""), rng)
            wake = wake[:voiced_end(wake) + int(0.02 * RATE_HZ)]
            question = QUESTIONS[i % len(QUESTIONS)]
            said = np.concatenate([wake, gap, voice.render(question, rng)]) if question \
                else wake
            for snr in CONDITIONS:
                noise = "" if snr is None else sorted(bank)[int(rng.integers(len(bank)))]
                before, after = RATE_HZ, int(2.5 * RATE_HZ)
                pcm = (np.concatenate([np.zeros(before, np.int16), said,
                                       np.zeros(after, np.int16)]) if snr is None
                       else mix(said, bank[noise], snr, rng, before, after))
                found = stream.feed(pcm)
                end_ms = (before + voiced_end(wake)) * 1000 / RATE_HZ
                confirmed = [d for d in found if d.confirmed]
                # a transcript check's time is added: the audio waits for it
                rows.append({"voice": voice.name, "split": voice.split, "kind": "wake",
                             "snr_db": snr, "noise": noise, "question": question,
                             "heard": bool(confirmed),
                             "after_phrase_ms": round(confirmed[0].audio_ms
                                                      + confirmed[0].check_ms - end_ms)
                             if confirmed else None,
                             "stage": confirmed[0].stage if confirmed else None,
                             "check_ms": round(confirmed[0].check_ms) if confirmed else None,
                             "rejected_candidates": sum(not d.confirmed for d in found),
                             "candidates": [(round(d.score, 3), round(d.verdict or 0.0, 3))
                                            for d in found],
                             "transcripts": [d.transcript for d in found
                                             if d.transcript is not None],
                             "checks": [round(d.check, 3) for d in found
                                        if d.check is not None]})
        for phrase in NEAR:
            said = voice.render(phrase, rng)
            for snr in CONDITIONS[:2]:
                noise = "" if snr is None else sorted(bank)[int(rng.integers(len(bank)))]
                pcm = (np.concatenate([np.zeros(RATE_HZ, np.int16), said,
                                       np.zeros(2 * RATE_HZ, np.int16)]) if snr is None
                       else mix(said, bank[noise], snr, rng, RATE_HZ, 2 * RATE_HZ))
                found = stream.feed(pcm)
                woke = [d for d in found if d.confirmed]
                rows.append({"voice": voice.name, "split": voice.split, "kind": "near_miss",
                             "phrase": phrase, "snr_db": snr, "noise": noise,
                             "heard": bool(woke), "stage": woke[0].stage if woke else None,
                             "candidates": [(round(d.score, 3), round(d.verdict or 0.0, 3))
                                            for d in found],
                             "transcripts": [d.transcript for d in found
                                             if d.transcript is not None],
                             "checks": [round(d.check, 3) for d in found
                                        if d.check is not None]})
        print(f"{voice.name}: {len(rows)} clips", flush=True)
    return rows, stream


def negative_segments(split: str = "test") -> list[tuple[str, list[str], list[str]]]:
    """``(kind, speech files, music files)`` of about five minutes each: prompts back to
    back, a music track, or prompts over a music track (a radio-like mix); from the test
    half of the files (the dev half is trained on: bench/train_wake_check.py mines it)."""
    speech = {kind: [p for _, p in recordings({kind: g}, split)]
              for kind, g in SPEECH_GLOBS.items()}
    music = [p for _, p in recordings(MUSIC_GLOBS, split)]
    segments: list[tuple[str, list[str], list[str]]] = []
    for kind, paths in speech.items():
        for j in range(0, len(paths), 100):
            segments.append((kind, paths[j:j + 100], []))
    segments += [(f"music:{path.split('/')[-2]}", [], [path]) for path in music]
    for n, (kind, paths) in enumerate(speech.items()):
        for j in range(0, len(paths), 100):
            track = music[(n * 7 + j // 100) % len(music)]
            segments.append((f"radio:{kind}", paths[j:j + 100], [track]))
    return segments


def segment_audio(segment: tuple[str, list[str], list[str]], bed_db: float = 6.0
                  ) -> np.ndarray:
    """A segment's audio; prompts over music have the music ``bed_db`` below them."""
    _, speech_files, music_files = segment
    gap = np.zeros(int(0.25 * RATE_HZ), np.int16)
    if not speech_files:
        return load(music_files[0])
    pcm = np.concatenate([x for p in speech_files for x in (load(p), gap)])
    if music_files:  # prompts over music (6 dB below them, as a radio host would be)
        bed = np.resize(load(music_files[0]), len(pcm)).astype(np.float64)
        voiced = pcm.astype(np.float64)
        bed *= np.sqrt(np.mean(voiced ** 2) / max(np.mean(bed ** 2), 1.0) / 10 ** (bed_db / 10))
        pcm = np.clip(voiced + bed, -32768, 32767).astype(np.int16)
    return pcm


def measure_segment(segment: tuple[str, list[str], list[str]]) -> dict[str, object]:
    kind = segment[0]
    pcm = segment_audio(segment)
    stream = Stream()
    found = stream.feed(pcm)
    return {"kind": kind, "seconds": len(pcm) / RATE_HZ,
            "false_accepts": [round(d.audio_ms / 1000, 2) for d in found if d.confirmed],
            "false_accept_transcripts": [d.transcript for d in found
                                         if d.confirmed and d.transcript is not None],
            "rejected_candidates": sum(not d.confirmed for d in found),
            "transcript_checks": sum(d.transcript is not None for d in found),
            "acoustic_checks": [round(d.check, 3) for d in found if d.check is not None],
            "false_accept_stages": [d.stage for d in found if d.confirmed],
            "cpu_s": stream.cpu_s, "chunks": stream.chunks,
            "model_chunks": stream.engine.chunks_processed}


def by_segment_kind(segments: list[dict[str, object]], key: str) -> dict[str, list[object]]:
    """``key``'s lists of the segments, joined per kind (several segments share a kind)."""
    out: dict[str, list[object]] = {}
    for segment in segments:
        if segment[key]:
            out.setdefault(str(segment["kind"]), []).extend(segment[key])  # type: ignore[arg-type]
    return out


def poisson_upper(k: int, exposure: float, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound of a Poisson rate, ``k`` events in ``exposure``."""
    def cdf(mu: float) -> float:
        return sum(math.exp(-mu) * mu ** i / math.factorial(i) for i in range(k + 1))
    lo, hi = 0.0, 10.0 + 10.0 * k
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > 1 - confidence else (lo, mid)
    return hi / exposure


def stage_costs(seconds: float = 60.0) -> dict[str, float]:
    """CPU milliseconds per 80 ms chunk: the VAD gate, features + model, the verifier."""
    rng = np.random.default_rng(0)
    pcm = (rng.normal(0, 2000, int(seconds * RATE_HZ))).astype(np.int16)
    chunks = chunks_of(pcm)
    vad = WebRtcVad(STTConfig().vad_aggressiveness)
    t = time.process_time()
    for c in chunks:
        vad.any_speech(c)
    vad_ms = (time.process_time() - t) * 1000 / len(chunks)
    inner = OpenWakeWordEngine(WakeWordConfig(verify=False))
    t = time.process_time()
    for c in chunks:
        inner.process(c)
    model_ms = (time.process_time() - t) * 1000 / len(chunks)
    verifying = OpenWakeWordEngine(WakeWordConfig())
    verifier = verifying.verifiers["hey_jarvis"]
    window = np.random.default_rng(1).normal(size=(16, 96)).astype(np.float32)
    t = time.process_time()
    for _ in range(2000):
        if verifier is not None:
            verifier.score(window, 0.5)
    verify_ms = (time.process_time() - t) * 1000 / 2000
    inner.close()
    verifying.close()
    return {"vad_gate_ms": round(vad_ms, 3), "features_and_model_ms": round(model_ms, 2),
            "verifier_ms": round(verify_ms, 3)}


def idle_cost(seconds: float = 300.0) -> dict[str, float]:
    """A quiet room (low hum and hiss): the share of one core the daemon's engine takes."""
    rng = np.random.default_rng(2)
    n = int(seconds * RATE_HZ)
    t = np.arange(n) / RATE_HZ
    room = 30 * np.sin(2 * np.pi * 50 * t) + rng.normal(0, 20, n)
    stream = Stream()
    stream.feed(room.astype(np.int16))
    return {"audio_s": seconds, "cpu_s": round(stream.cpu_s, 3),
            "share_of_one_core_pct": round(100 * stream.cpu_s / seconds, 3),
            "chunks_through_the_model": stream.engine.chunks_processed}


def measure_personal(seed: int, takes: int = 6, trials: int = 20) -> dict[str, object]:
    """``heisenberg enroll`` on one test voice (flite's slt), its verifier gated by the
    bundled one as the daemon uses it: its recall on new renderings of that voice, how often
    that voice's near misses wake it, and how often other voices saying the wake phrase
    still wake it."""
    from heisenberg.enroll import other_voice, train_personal

    rng = np.random.default_rng(seed)
    cast = {v.name: v for v in voices()}
    user = cast["flite-slt"]
    recorded = [user.render("Hey Jarvis.", rng) for _ in range(takes)]
    verifier, loo = train_personal(recorded, "hey_jarvis", other_voice("hey_jarvis", seed))
    verifier = with_bundled_gate(verifier, "hey_jarvis")  # as find_verifier gives it
    engine = OpenWakeWordEngine(WakeWordConfig(), verifiers={"hey_jarvis": verifier})
    bank = noise_bank()

    def heard(audio: np.ndarray, snr: float | None) -> bool:
        before, after = RATE_HZ, 2 * RATE_HZ
        pcm = (np.concatenate([np.zeros(before, np.int16), audio, np.zeros(after, np.int16)])
               if snr is None else mix(audio, bank["moh-opsound"], snr, rng, before, after))
        return any(d.confirmed for c in chunks_of(pcm) if (d := engine.process(c)))

    out: dict[str, object] = {"user_voice": user.name, "takes": takes,
                              "threshold": round(verifier.threshold, 3),
                              "leave_one_out": [round(p, 3) for p in loo]}
    for snr in (None, 10.0):
        cond = "clean" if snr is None else f"{snr:g} dB"
        out[f"user_recall_{cond}"] = round(sum(
            heard(user.render(WAKE[i % 3] + ", " + QUESTIONS[i % 5], rng), snr)
            for i in range(trials)) / trials, 3)
    for snr in (None, 10.0):  # the user's own near misses: what enrolling must not let in
        cond = "clean" if snr is None else f"{snr:g} dB"
        out[f"user_near_miss_rate_{cond}"] = round(sum(
            heard(user.render(phrase, rng), snr) for phrase in NEAR) / len(NEAR), 3)
    others = {}
    for name, voice in cast.items():
        if name != user.name and not name.startswith("flite-slt"):
            others[name] = round(sum(heard(voice.render(WAKE[i % 3] + ".", rng), None)
                                     for i in range(5)) / 5, 3)
    out["other_voices_accepted"] = others
    engine.close()
    return out


def frr_table(rows: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = collections.defaultdict(dict)
    groups: dict[tuple[str, str], list[bool]] = collections.defaultdict(list)
    for r in rows:
        if r["kind"] == "wake":
            cond = "clean" if r["snr_db"] is None else f"{r['snr_db']:g} dB"
            groups[(str(r["voice"]), cond)].append(bool(r["heard"]))
            groups[(f"all {r['split']} voices", cond)].append(bool(r["heard"]))
    for (voice, cond), heard in sorted(groups.items()):
        table[voice][cond] = round(1 - sum(heard) / len(heard), 3)
    return dict(table)


async def measure(args: argparse.Namespace) -> dict[str, object]:
    started = time.time()
    if args.personal_only:
        seeds = range(args.seed, args.seed + args.personal_only)
        return {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "personal_verifier_by_seed": {str(s): measure_personal(s) for s in seeds},
                "wall_s": round(time.time() - started)}
    if args.verifier:
        os.environ["BENCH_WAKE_VERIFIER"] = args.verifier  # the workers share the cwd
    if args.check_threshold is not None:
        os.environ["BENCH_WAKE_CHECK"] = str(args.check_threshold)
    if args.check_model:
        os.environ["BENCH_WAKE_CHECK_MODEL"] = args.check_model
    if args.acoustic:
        os.environ["BENCH_WAKE_ACOUSTIC"] = args.acoustic
    if args.check_words:
        os.environ["BENCH_WAKE_WORDS"] = args.check_words
    segments = negative_segments()
    if args.max_segments:
        segments = segments[:max(0, args.max_segments)]
    with multiprocessing.get_context("spawn").Pool(args.procs) as pool:
        pending = pool.map_async(measure_segment, segments, chunksize=1)
        rows, stream = measure_positives(args.per_voice, args.seed, args.split,
                                           args.noise_split, args.voice)
        personal = measure_personal(args.seed) if args.split == "all" else {}
        negatives = pending.get()
    by_kind: dict[str, dict[str, float]] = collections.defaultdict(
        lambda: {"hours": 0.0, "false_accepts": 0})
    for seg in negatives:
        group = str(seg["kind"]).split(":")[0] if ":" in str(seg["kind"]) else "speech"
        for key in (group, "all"):
            by_kind[key]["hours"] += float(seg["seconds"]) / 3600  # type: ignore[arg-type]
            by_kind[key]["false_accepts"] += len(seg["false_accepts"])  # type: ignore[arg-type]
    fa = {kind: {"hours": round(v["hours"], 2), "false_accepts": int(v["false_accepts"]),
                 "per_hour": round(v["false_accepts"] / v["hours"], 3),
                 "per_hour_upper_95": round(poisson_upper(int(v["false_accepts"]),
                                                          v["hours"]), 3)}
          for kind, v in by_kind.items()}
    near = collections.defaultdict(list)
    for r in rows:
        if r["kind"] == "near_miss":
            cond = "clean" if r["snr_db"] is None else f"{r['snr_db']:g} dB"
            near[f"{r['split']} {cond}"].append(bool(r["heard"]))
            near[f"phrase {r['phrase']}"].append(bool(r["heard"]))
    latency = [float(r["after_phrase_ms"]) for r in rows  # type: ignore[arg-type]
               if r["kind"] == "wake" and r["after_phrase_ms"] is not None]
    config = bench_config()
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {"model": config.model, "threshold": config.threshold,
                   "patience": config.patience, "verify": config.verify,
                   "verifier_threshold": config.verifier_threshold,
                   "check_threshold": config.check_threshold,
                   "check_words": config.check_words,
                   "acoustic_check": config.acoustic_check},
        "acoustic_classifier": args.acoustic if args.acoustic not in ("", "on", "off")
        else "bundled",
        "check_model": args.check_model or "the daemon's (tiny.en)",
        "verifier": args.verifier or "bundled",
        "noise_split": args.noise_split,
        "voices": {v.name: v.split for v in voices()},
        "positives": sum(r["kind"] == "wake" for r in rows),
        "false_reject_rate": frr_table(rows),
        "near_miss_trigger_rate": {k: round(sum(v) / len(v), 3) for k, v in sorted(near.items())},
        "false_accepts": fa,
        "false_accept_times_s": by_segment_kind(negatives, "false_accepts"),
        "false_accept_stages": by_segment_kind(negatives, "false_accept_stages"),
        "negative_checks": {"transcript": sum(int(s["transcript_checks"])  # type: ignore[call-overload]
                                              for s in negatives),
                            "acoustic": sum(len(s["acoustic_checks"])  # type: ignore[arg-type]
                                            for s in negatives),
                            "acoustic_highest": sorted(
                                (c for s in negatives for c in s["acoustic_checks"]),  # type: ignore[attr-defined]
                                reverse=True)[:10]},
        "decision_after_phrase_end_ms": summary(latency, 0) if latency else {},
        "negative_hours": round(sum(float(s["seconds"]) for s in negatives) / 3600, 2),  # type: ignore[arg-type]
        "stage_cpu_ms_per_chunk": stage_costs(),
        "quiet_room": idle_cost(),
        "personal_verifier": personal,
        "busy_stream_cpu_share_pct": round(100 * sum(float(s["cpu_s"]) for s in negatives)  # type: ignore[arg-type]
                                           / sum(float(s["seconds"]) for s in negatives), 2)  # type: ignore[arg-type]
        if negatives else None,
        "median_positive_clip_cpu_ms_per_chunk": round(1000 * stream.cpu_s / stream.chunks, 2),
        "wall_s": round(time.time() - started),
        "utterances": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-voice", type=int, default=20)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--max-segments", type=int, default=0,
                    help="for a quick try: 0 = all, -1 = none")
    ap.add_argument("--split", choices=["all", "dev", "test"], default="all",
                    help="the voices that say the phrases (dev: for trying a verifier)")
    ap.add_argument("--verifier", default="", help="a verifier .npz to use instead of the "
                    "bundled one (try it on --split dev only)")
    ap.add_argument("--voice", default="", help="only this voice says the phrases")
    ap.add_argument("--check-threshold", type=float, default=None,
                    help="wakeword.check_threshold to use instead of the default (dev only)")
    ap.add_argument("--check-model", default="", metavar="FOLDER",
                    help="another whisper (a CTranslate2 folder) for the transcript check, "
                    "English forced (dev only)")
    ap.add_argument("--acoustic", default="", metavar="on|off|NPZ",
                    help="wakeword.acoustic_check on or off instead of the default, or on "
                    "with another classifier (bench/train_wake_check.py)")
    ap.add_argument("--check-words", choices=["on", "off"], default="",
                    help="wakeword.check_words instead of the default")
    ap.add_argument("--noise-split", choices=["dev", "test"], default="test",
                    help="the half of the noise the phrases are mixed with (dev: for tuning)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--personal-only", type=int, default=0, metavar="N",
                    help="only `heisenberg enroll`'s figures, for N seeds from --seed")
    ap.add_argument("--out", default="bench/results/wakeword.json")
    run(measure, ap)


if __name__ == "__main__":
    main()
