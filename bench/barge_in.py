"""Benchmark: open speakers. Is "Hey Jarvis, <question>" heard over the assistant's own
voice, with and without echo cancellation, on a real-time sound device that behaves like a
room?

    python bench/barge_in.py [--samples 12] [--levels-db -12 -6 0 6] [--stop-on-wake]
                             [--speaker-latency-ms MS] [--out bench/results/barge_in.json]

The rig (bench/room.py): a private PulseAudio with two null sinks. The assistant plays its
answer (Piper joe, its own voice, sampling noise on) into the speaker sink through the
daemon's ``SpeakerSink``, which records what it plays for the echo canceller; a room thread
reads that sink's monitor, delays it, convolves it with a small room's impulse response,
clips it mildly and plays it at the level under test into the room sink; the user (voices
the defaults were not tuned on) speaks into the same sink; the daemon's ``MicrophoneSource``
records the room sink's monitor. Each microphone chunk goes to two hearings built like the
daemon's (default config): one after the daemon's ``EchoCanceller``, one on the raw signal.

The room's gain stays fixed through the run, as a desk's would; the user's voice is scaled to
give each level. Reported, by the level of the speaker's echo over the user's voice at the
microphone (dB):
the share of wake phrases heard (a confirmed detection while the user speaks or within
1.5 s), wake words fired by the assistant's own voice, the echo return loss enhancement
(raw over cleaned energy while only the assistant speaks), the word error rate of whisper on
the user's speech as the canceller hands it to speech to text (``Cleaned.speech``; also
through the residual echo suppressor, and raw) against the same speech without echo: the
rendering itself, and the same speech played again through the same room and microphone
while nothing plays (the fair comparison: same path, same margins), the delay the
canceller tracked, and its CPU cost per 80 ms chunk. The answer plays on through the whole
question (double talk to its end), unless ``--stop-on-wake``: then it is cut when the cleaned
hearing hears the wake word, as the daemon cuts it, so the user speaks over it only as long as
they would over the daemon (``answer_cut_after_user_s``); the clips transcribed are the same
in both modes (the wake phrase and the question), each twice: cut by the clock in whole
chunks, and cut to the sample around the user's rendering, found by cross-correlation
(``*_aligned``). The room and its canceller persist through the run, as in a daemon; one
answer warms them up first and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import run
from endpointing import wer_counts
from room import PulseRoom, echo_gain, impulse_response, pulse_rig
from speech_sets import voices

from heisenberg.audio.echo import Cleaned, EchoCanceller, EchoReference
from heisenberg.audio.format import RATE_HZ, AudioChunk, resample
from heisenberg.core.config import Config
from heisenberg.core.events import WakewordDetected
from heisenberg.orchestrator.hearing import hearing_for
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.wakeword import OpenWakeWordEngine

ANSWERS = [
    "Once upon a time, in a land far away, there lived a mighty dragon who guarded a mountain "
    "of gold and slept for a hundred years.",
    "The weather today will be mostly sunny with a light breeze from the west, and tomorrow "
    "clouds will bring some rain in the afternoon.",
    "To make a good cup of tea, warm the pot first, use one spoon of leaves for each cup, and "
    "let it steep for about four minutes.",
    "The capital of Australia is Canberra, which was chosen as a compromise between Sydney and "
    "Melbourne, the two largest cities.",
]
QUESTIONS = ["What time is it in Tokyo?", "How tall is the Eiffel Tower?",
             "Set a timer for ten minutes.", "Who wrote the Odyssey?",
             "What is the weather like tomorrow?", "How many days are in a leap year?"]
ROOM_GAIN = 0.25
"""The echo path's gain (the speaker's volume, the distance to the microphone), fixed for
the run: the answer reaches the microphone 12 dB below its own level."""
AFTER_S = 1.5
"""A detection this long after the user's last word still counts as heard."""


def onset(heard: np.ndarray, said: np.ndarray) -> int:
    """Where ``said`` begins in ``heard`` (the direct path: the strongest alignment),
    to the sample, by cross-correlation."""
    n = 1 << int(np.ceil(np.log2(len(heard) + len(said))))
    corr = np.fft.irfft(np.fft.rfft(heard.astype(np.float64), n)
                        * np.conj(np.fft.rfft(said.astype(np.float64), n)), n)
    return int(np.argmax(corr[:len(heard)]))


def cut(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """``audio[start:start + length]``, zeros where that is outside it."""
    out = np.zeros(length, audio.dtype)
    lo, hi = max(0, start), min(len(audio), start + length)
    if hi > lo:
        out[lo - start:hi - start] = audio[lo:hi]
    return out


class Tap:
    """The microphone's chunks as the two hearings took them: (capture time, raw, cleaned,
    what speech to text gets from the canceller, what each hearing returned)."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, np.ndarray, np.ndarray, np.ndarray, bool, bool]] = []

    def between(self, start: float, end: float) -> list[tuple[float, np.ndarray, np.ndarray,
                                                              np.ndarray,
                                                           bool, bool]]:
        return [r for r in self.rows if start <= r[0] < end]


async def measure(args: argparse.Namespace) -> dict[str, object]:
    rng = np.random.default_rng(args.seed)
    config = Config()
    tts = PiperTTS(config.tts)
    stt = WhisperSTT(config.stt)
    test_voices = [v for v in voices() if v.split == args.split and v.name != "piper-joe"]
    ir = impulse_response(rng)
    room_delay_ms = float(args.room_delay_ms)
    with tempfile.TemporaryDirectory() as tmp, \
            pulse_rig(Path(tmp), ir, room_delay_ms) as env:
        os.environ.update(env)
        import sounddevice as sd

        sd._terminate()  # PortAudio lists the devices once: make it look again
        sd._initialize()
        from heisenberg.audio.sinks import SpeakerSink
        from heisenberg.audio.sources import MicrophoneSource

        reference = EchoReference()
        record: list[tuple[object, ...]] = []
        lock = threading.Lock()
        if args.record:  # every block played and every chunk heard, in the order they came
            played = reference.played

            def recording(samples: np.ndarray, rate_hz: int, at: float) -> None:
                with lock:
                    record.append(("played", samples.copy(), rate_hz, at))
                    played(samples, rate_hz, at)

            reference.played = recording  # type: ignore[method-assign]
        canceller = EchoCanceller(reference, delay_ms=config.audio.echo_delay_ms)
        cleaned: list[Cleaned] = []
        cost_s: list[float] = []
        clean = canceller.clean

        def cleaning(chunk: AudioChunk) -> Cleaned:  # the hearing's own call, noted
            if args.record:
                with lock:
                    record.append(("heard", chunk))
            started = time.perf_counter()
            result = clean(chunk)
            if result.chunk is not chunk:
                cost_s.append(time.perf_counter() - started)
            cleaned[:] = [result]
            return result

        canceller.clean = cleaning  # type: ignore[method-assign]
        # As in the daemon: the hearing runs the canceller on each chunk (and knows when it
        # has settled); the other hearing gets the raw chunk.
        cleaned_hearing = hearing_for(config, OpenWakeWordEngine(config.wakeword),
                                      canceller=canceller)
        raw_hearing = hearing_for(config, OpenWakeWordEngine(config.wakeword))
        latency_ms = (config.audio.output_latency_ms if args.speaker_latency_ms is None
                      else args.speaker_latency_ms)
        speaker = SpeakerSink("hz_speaker", tts.rate_hz, latency_s=latency_ms / 1000)
        speaker.reference = reference
        user = SpeakerSink("hz_room", RATE_HZ)
        mic = MicrophoneSource("hz_mic")
        tap = Tap()
        main_loop = asyncio.get_running_loop()
        stops: list[float] = []  # when the daemon would have cut the answer (--stop-on-wake)

        def hear(chunk: AudioChunk) -> None:  # the hearing's thread: both hearings
            playing = speaker.now_playing is not None
            echo = speaker.hearing()
            cleaned.clear()
            woke = [any(isinstance(h, WakewordDetected) for h in hearing.feed(
                chunk, playing=playing, echo=echo)) for hearing in (cleaned_hearing,
                                                                      raw_hearing)]
            assert len(cleaned) == 1, "the cleaned hearing did not run the canceller once"
            clean, speech = cleaned[0]
            assert chunk.captured_at is not None
            tap.rows.append((chunk.captured_at, chunk.array(), clean.array(), speech.array(),
                             *woke))
            for hearing, fired in zip((cleaned_hearing, raw_hearing), woke, strict=True):
                if fired:
                    hearing.stop("bench")  # only the detection is measured
            if args.stop_on_wake and woke[0] and playing:
                # As VoiceLoop does at a barge-in: the speaker is cut at the detection.
                stops.append(time.monotonic())
                asyncio.run_coroutine_threadsafe(speaker.stop(), main_loop)

        async def listen() -> None:
            async for chunk in mic.chunks():
                await asyncio.to_thread(hear, chunk)

        room = PulseRoom(env)
        reader = asyncio.create_task(listen())
        await user.play(AudioChunk(np.zeros(RATE_HZ // 5, np.int16).tobytes(), RATE_HZ))
        await asyncio.sleep(1.0)
        # Calibration: the room's own gain at volume 0 dB, on white noise (which a
        # unit-energy response leaves at its RMS).
        room.set_gain(1.0)
        noise = (rng.standard_normal(2 * RATE_HZ) * 2000).astype(np.int16)
        mark = time.monotonic()
        await speaker.play(AudioChunk(noise.tobytes(), RATE_HZ))
        await asyncio.sleep(0.5)
        got = [r[1] for r in tap.between(mark + 0.5, mark + 1.8)]
        room_gain = float(np.sqrt(np.mean(np.concatenate(got).astype(np.float64) ** 2))
                          / 2000)
        room.set_gain(ROOM_GAIN / room_gain)
        print(f"room calibration: gain {room_gain:.3f} at 0 dB", file=sys.stderr)

        async def one(level_db: float, k: int) -> dict[str, object]:
            answer = tts.synthesize(ANSWERS[k % len(ANSWERS)])
            answer16 = resample(answer.array(), answer.rate_hz, RATE_HZ)
            voice = test_voices[k % len(test_voices)]
            question = QUESTIONS[k % len(QUESTIONS)]
            said = await asyncio.to_thread(voice.render, f"Hey Jarvis, {question}", rng)
            # The room stays as it is (a real echo path does not change between answers);
            # the user speaks louder or softer.
            scale = ROOM_GAIN / echo_gain(answer16, said, ir, level_db, clip=False)
            said = np.clip(said.astype(np.float64) * scale, -32768, 32767).astype(np.int16)
            playing = asyncio.create_task(
                speaker.play_text(answer, ANSWERS[k % len(ANSWERS)]))
            began = time.monotonic()
            await asyncio.sleep(float(rng.uniform(2.0, max(2.5, answer.duration_ms / 1000
                                                           - 4.0))))
            user_at = time.monotonic()
            stops.clear()
            await user.play(AudioChunk(said.tobytes(), RATE_HZ))
            user_end = time.monotonic()
            await playing
            await asyncio.sleep(AFTER_S + 0.5)
            done = time.monotonic()
            during = tap.between(user_at, user_end + AFTER_S)
            own = tap.between(began, user_at) + tap.between(user_end + AFTER_S, done)
            echo_only = tap.between(began + 0.5, user_at - 0.1)
            raw_e = sum(float(np.mean(r[1].astype(np.float64) ** 2)) for r in echo_only)
            clean_e = sum(float(np.mean(r[2].astype(np.float64) ** 2)) for r in echo_only)
            segment = tap.between(user_at - 0.3, user_end + 0.5)
            wide = tap.between(user_at - 0.8, user_end + 1.0)
            # The same speech again with nothing playing, through the same room and
            # microphone (the canceller passes it untouched): the fair "without echo".
            await asyncio.sleep(1.0)
            alone_at = time.monotonic()
            await user.play(AudioChunk(said.tobytes(), RATE_HZ))
            alone_end = time.monotonic()
            await asyncio.sleep(1.0)
            alone_segment = tap.between(alone_at - 0.3, alone_end + 0.5)
            alone_wide = tap.between(alone_at - 0.8, alone_end + 1.0)
            text = f"Hey Jarvis, {question}"
            # The same stretch of both, to the sample: 0.3 s before the user's first sample
            # at the microphone to 0.5 s after their last. Cut by the clock in whole 80 ms
            # chunks (the segments above), the two differ by up to a chunk in where the
            # speech sits, and whisper's words flip on that alone.
            length = len(said) + RATE_HZ * 8 // 10
            aligned, onsets = {}, {}
            for name, rows_ in (("aec", wide), ("alone_rig", alone_wide)):
                speech = np.concatenate([r[3] for r in rows_])
                at = onset(speech, said)
                onsets[name] = round(at / RATE_HZ, 3)
                aligned[name] = cut(speech, at - RATE_HZ * 3 // 10, length)
            heard = {}
            for name, audio in (
                    ("alone", said),
                    ("alone_rig", np.concatenate([r[3] for r in alone_segment])),
                    ("aec", np.concatenate([r[3] for r in segment])),
                    ("aec_suppressed", np.concatenate([r[2] for r in segment])),
                    ("raw", np.concatenate([r[1] for r in segment])),
                    ("aec_aligned", aligned["aec"]),
                    ("alone_rig_aligned", aligned["alone_rig"])):
                heard[name] = await asyncio.to_thread(stt.transcribe, audio)
            for hearing in (cleaned_hearing, raw_hearing):
                hearing.stop("bench")
            return {
                "level_db": level_db, "voice": voice.name, "said": text,
                "user_s": [user_at, user_end],
                "user_onset_in_window_s": onsets,
                "answer_cut_after_user_s": round(stops[0] - user_at, 3) if stops else None,
                "delay_ms": round(canceller.stats.delay_ms, 1),
                "speaker_underflows": speaker.underflows,
                "heard_aec": any(r[4] for r in during), "heard_raw": any(r[5] for r in during),
                "own_voice_wakes_aec": sum(r[4] for r in own),
                "own_voice_wakes_raw": sum(r[5] for r in own),
                "erle_db": round(10 * np.log10(raw_e / max(clean_e, 1e-9)), 1)
                if raw_e > 0 else None,
                **{f"wer_{name}": wer_counts(text, transcript)
                   for name, transcript in heard.items()},
                "transcripts": heard,
            }

        await one(0.0, 99)  # warm-up: the canceller meets the room
        rows = []
        for level in args.levels_db:
            for k in range(args.samples):
                if reader.done():  # the microphone's reader failed: say why
                    await reader
                row = await one(level, k)
                rows.append(row)
                print(row, file=sys.stderr, flush=True)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await speaker.close()
        await user.close()
    if args.record:
        await asyncio.to_thread(Path(args.record).write_bytes, pickle.dumps(
            {"events": record, "rows": rows, "echo_delay_ms": config.audio.echo_delay_ms}))
    return summarize(rows, args, canceller, cost_s, room_delay_ms, speaker.latency_s)


def wer_gap(rows: list[dict[str, object]], seed: int = 0, draws: int = 10000,
            suffix: str = "") -> dict[str, object]:
    """Points of WER the user's words lose to double talk: pooled over ``rows``, the
    speech to text signal with the canceller against the same speech alone through the
    room, with a 95 % interval from a paired bootstrap over the trials. ``suffix``
    "_aligned": both cut at the same place around the user's speech."""
    rows = [r for r in rows if f"wer_aec{suffix}" in r]
    pairs = np.array([(*r[f"wer_aec{suffix}"], *r[f"wer_alone_rig{suffix}"])  # type: ignore[misc]
                      for r in rows], dtype=np.float64)
    if not len(pairs):
        return {"points": None, "ci95": None, "trials": 0}

    def gap(p: np.ndarray) -> np.ndarray:
        return 100 * (p[..., 0].sum(-1) / p[..., 1].sum(-1) - p[..., 2].sum(-1)
                      / p[..., 3].sum(-1))

    picks = np.random.default_rng(seed).integers(0, len(pairs), (draws, len(pairs)))
    low, high = np.percentile(gap(pairs[picks]), [2.5, 97.5])
    return {"points": round(float(gap(pairs)), 1), "ci95": [round(float(low), 1),
                                                             round(float(high), 1)],
            "trials": len(pairs)}


def summarize(rows: list[dict[str, object]], args: argparse.Namespace,
              canceller: EchoCanceller, cost_s: list[float], room_delay_ms: float,
              speaker_latency_s: float
              ) -> dict[str, object]:
    def share(level: float, key: str) -> float:
        sel = [r for r in rows if r["level_db"] == level]
        return round(sum(bool(r[key]) for r in sel) / len(sel), 3)

    def wer(level: float, key: str) -> float:
        sel = [r[key] for r in rows if r["level_db"] == level]
        return round(100 * sum(e for e, _ in sel) / max(1, sum(n for _, n in sel)), 1)

    def median(level: float, key: str) -> float | None:
        vals = [r[key] for r in rows if r["level_db"] == level and r[key] is not None]
        return round(float(np.median(vals)), 1) if vals else None

    levels = [float(x) for x in args.levels_db]
    key = {level: f"{level:g}" for level in levels}
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rig": {"room_delay_ms": room_delay_ms, "rt60_s": 0.25,
                "device": "PulseAudio null sinks, loopback + convolution, real time"},
        "samples_each": args.samples, "seed": args.seed,
        "answer": ("cut at the wake word, as the daemon does" if args.stop_on_wake
                   else "played on through the whole question"),
        "voices": sorted({str(r["voice"]) for r in rows}),
        "heard_with_aec_by_level_db": {key[lv]: share(lv, "heard_aec") for lv in levels},
        # With --stop-on-wake the answer is cut at the cleaned hearing's detection, after which
        # the raw hearing hears the user alone: its share would say nothing.
        "heard_without_aec_by_level_db": None if args.stop_on_wake else
        {key[lv]: share(lv, "heard_raw") for lv in levels},
        "own_voice_wakes": {"with_aec": sum(int(r["own_voice_wakes_aec"]) for r in rows),
                            "without_aec": sum(int(r["own_voice_wakes_raw"]) for r in rows)},
        "erle_db_median_by_level_db": {key[lv]: median(lv, "erle_db") for lv in levels},
        "wer_percent_by_level_db": {key[lv]: {"alone": wer(lv, "wer_alone"),
                                              "alone_through_room": wer(lv, "wer_alone_rig"),
                                              "with_aec": wer(lv, "wer_aec"),
                                              "with_aec_suppressed": wer(lv, "wer_aec_suppressed"),
                                              "without_aec": wer(lv, "wer_raw"),
                                              "alone_through_room_aligned":
                                              wer(lv, "wer_alone_rig_aligned"),
                                              "with_aec_aligned": wer(lv, "wer_aec_aligned")}
                                    for lv in levels},
        "double_talk_wer_gap": {"all": wer_gap(rows), **{
            key[lv]: wer_gap([r for r in rows if r["level_db"] == lv]) for lv in levels}},
        "double_talk_wer_gap_aligned": {"all": wer_gap(rows, suffix="_aligned"), **{
            key[lv]: wer_gap([r for r in rows if r["level_db"] == lv], suffix="_aligned")
            for lv in levels}},
        "tracked_delay_ms": round(canceller.stats.delay_ms, 1),
        "delay_updates": canceller.stats.delay_updates,
        "aec_ms_per_80ms_chunk": round(1000 * float(np.mean(cost_s)), 3) if cost_s else None,
        "speaker_latency_ms": round(speaker_latency_s * 1000),
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("--levels-db", type=float, nargs="+", default=[-12, -6, 0, 6])
    ap.add_argument("--room-delay-ms", type=float, default=40.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--speaker-latency-ms", type=float, default=None,
                    help="the speaker's device buffer (default: audio.output_latency_ms)")
    ap.add_argument("--split", choices=["dev", "test"], default="test",
                    help="the users' voices: dev (to tune on) or test (to measure)")
    ap.add_argument("--record", metavar="FILE",
                    help="also pickle every block played and every chunk heard, in order, "
                         "with the trials: the run can be replayed through a canceller offline")
    ap.add_argument("--stop-on-wake", action="store_true",
                    help="cut the answer when the cleaned hearing hears the wake word, as "
                    "the daemon does (default: it plays on through the whole question, "
                    "double talk to the end)")
    ap.add_argument("--out", default="bench/results/barge_in.json")
    run(measure, ap)


if __name__ == "__main__":
    main()
