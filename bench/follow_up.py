"""Benchmark: the follow-up window (``session.follow_up_s``). Heard follow-ups, and false
ones started by room sound, through the daemon's hearing path in audio time.

    python bench/follow_up.py [--window-s 5] [--questions 24] [--windows 12]
                              [--out bench/results/follow_up.json]

After an answer the daemon calls ``Hearing.start(..., no_speech_s=window)``: whatever the
VAD takes for speech in the window becomes a question, without the wake word. Here each
window is opened on a fresh stretch of audio (the answer itself is not in it: the echo
canceller's job, bench/barge_in.py), and the hearing decides with the default config:

- heard: a follow-up question (voices the defaults were not tuned on) starting 0.3-2 s into
  the window, clean and over real recorded noise at 10 dB; heard = a transcript comes out;
- false: the window filled with one kind of real recorded sound and nobody asking anything
  (music, machine noise, other people talking in other languages: a TV, a radio), at two
  room levels; false = a non-empty transcript comes out (it would go to the LLM).
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
from common import run
from endpointing import _NoWakeWord, wer_counts
from speech_sets import SPEECH_GLOBS, load, mix, noise_bank, recordings, voices

from heisenberg.audio.format import CHUNK_SAMPLES, RATE_HZ, AudioChunk
from heisenberg.core.config import Config
from heisenberg.orchestrator.hearing import Utterance, hearing_for
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.wakeword import strip_wake_word

QUESTIONS = ["And what about Germany?", "How long does it take to get there?",
             "Can you say that again?", "What is the population?", "Is it far from here?",
             "And tomorrow?", "Why is that?", "How much does it cost?"]
LEVELS_RMS = {"quiet": 300.0, "loud": 1500.0}
"""Room sound levels (RMS of 16-bit samples; speech here is ~2000-4000)."""


def hear_window(config: Config, stt: WhisperSTT, audio: np.ndarray, window_s: float
                ) -> str | None:
    """Open a follow-up window on ``audio``; the transcript it produced, or None."""
    hearing = hearing_for(config, _NoWakeWord(), transcribe=stt.transcribe)
    # A second of the room before the window: the pre-roll and the VAD's warm-up.
    lead = RATE_HZ // CHUNK_SAMPLES * CHUNK_SAMPLES
    for i in range(0, len(audio) - CHUNK_SAMPLES + 1, CHUNK_SAMPLES):
        if i == lead:
            hearing.start(i * 1000 // RATE_HZ, no_speech_s=window_s)
        chunk = AudioChunk(audio[i:i + CHUNK_SAMPLES].tobytes(), RATE_HZ, i * 1000 // RATE_HZ)
        for item in hearing.feed(chunk):
            if isinstance(item, Utterance):
                return strip_wake_word(stt.transcribe(item.samples))
        if i > lead and not hearing.listening_to:
            return None  # the window closed on silence
    for item in hearing.finish():
        if isinstance(item, Utterance):
            return strip_wake_word(stt.transcribe(item.samples))
    return None


def scaled(audio: np.ndarray, rms: float) -> np.ndarray:
    x = audio.astype(np.float64)
    now = float(np.sqrt(np.mean(x ** 2))) or 1.0
    return np.clip(x * rms / now, -32768, 32767).astype(np.int16)


async def measure(args: argparse.Namespace) -> dict[str, object]:
    rng = np.random.default_rng(args.seed)
    config = Config()
    stt = WhisperSTT(config.stt)
    test_voices = [v for v in voices() if v.split == "test"]
    bank = noise_bank()
    window = args.window_s
    heard: dict[str, list[int]] = {"clean": [], "10dB": []}
    wer: dict[str, list[tuple[int, int]]] = {"clean": [], "10dB": []}
    for k in range(args.questions):
        voice = test_voices[k % len(test_voices)]
        question = QUESTIONS[k % len(QUESTIONS)]
        said = voice.render(question, rng)
        before = RATE_HZ + int(rng.uniform(0.3, 2.0) * RATE_HZ)
        after = 2 * RATE_HZ
        for condition in heard:
            if condition == "clean":
                audio = np.concatenate([np.zeros(before, np.int16), said,
                                        np.zeros(after, np.int16)])
            else:
                noise = bank[sorted(bank)[k % len(bank)]]
                audio = mix(said, noise, 10.0, rng, before, after)
            text = hear_window(config, stt, audio, window)
            heard[condition].append(int(bool(text)))
            wer[condition].append(wer_counts(question, text or ""))
    rooms: dict[str, np.ndarray] = dict(bank)
    speech = [load(p) for _, p in list(recordings({"asterisk-fr": SPEECH_GLOBS["asterisk-fr"]},
                                                  "test"))[:80]]
    rooms["speech-fr"] = np.concatenate(speech)
    false: dict[str, dict[str, float]] = {}
    examples: list[str] = []
    total_windows = 0
    total_false = 0
    for kind, sound in sorted(rooms.items()):
        false[kind] = {}
        for level, rms in LEVELS_RMS.items():
            n_false = 0
            for _ in range(args.windows):
                length = int((window + 4.0) * RATE_HZ)
                start = int(rng.integers(0, max(1, len(sound) - length)))
                audio = scaled(np.resize(sound[start:start + length], length), rms)
                text = hear_window(config, stt, audio, window)
                if text:
                    n_false += 1
                    if len(examples) < 12:
                        examples.append(f"{kind}/{level}: {text!r}")
            false[kind][level] = round(n_false / args.windows, 3)
            total_windows += args.windows
            total_false += n_false

    def share(xs: list[int]) -> float:
        return round(sum(xs) / len(xs), 3)

    def wer_pct(xs: list[tuple[int, int]]) -> float:
        return round(100 * sum(e for e, _ in xs) / sum(n for _, n in xs), 1)

    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "window_s": window, "seed": args.seed,
        "voices": sorted(v.name for v in test_voices),
        "heard": {c: share(v) for c, v in heard.items()},
        "wer_percent": {c: wer_pct(v) for c, v in wer.items()},
        "questions_each": args.questions,
        "false_follow_up_share_by_sound_and_level": false,
        "false_follow_up_share_overall": round(total_false / total_windows, 3),
        "windows_each": args.windows,
        "false_examples": examples,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--window-s", type=float, default=5.0)
    ap.add_argument("--questions", type=int, default=24)
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="bench/results/follow_up.json")
    run(measure, ap)


if __name__ == "__main__":
    main()
