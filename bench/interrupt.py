"""Benchmark: interrupting the assistant by speaking over it, without the wake word
(``session.interrupt_speech_ms``), on the real-time room rig (bench/room.py).

    python bench/interrupt.py [--speech-ms 96] [--samples 12] [--levels-db -6 0 6]
                              [--split test] [--speaker-latency-ms MS] [--busy N]
                              [--busy-nice N] [--headphones]
                              [--out bench/results/interrupt.json]

The assistant plays answers (Piper joe, its own voice) on the rig's speaker through the
daemon's ``SpeakerSink``; the microphone (``MicrophoneSource``) hears them through the room,
and a hearing built like the daemon's (default config, echo cancellation, the given
``interrupt_speech_ms``) listens. On an interruption the bench does what the voice loop does:
it cancels the answer and stops the speaker. Trials, in one run (the canceller persists, as
in a daemon; the first answer after start is reported on its own):

- the user (voices the defaults were not tuned on) asks a question or says "stop" without
  the wake word 2-4 s into an answer, at each level of the echo over their voice: interrupted
  or not, and the time from the onset of their voice (the room sink's clock, where they
  spoke) to the answer's last sample sounding (the speaker's clock): what a user hears; the
  decision in audio time; the word error rate of the question heard after it;
- answers with nobody speaking, and answers over real recorded room sound (music, machine
  noise, foreign babble) played into the room: false interruptions per hour of playback.

``--headphones``: ``audio.echo_cancel = "headphones"``, no canceller, and the room's echo
path muted (the user still speaks at each level's loudness); the stop is then timed with the
speaker's monitor and the microphone on their own capture clocks (no echo to align them by).

``--busy N`` keeps N processes computing meanwhile (a core each, as an LLM that generates
while the answer plays): the speaker's buffer must not run dry (``speaker_underflows``);
``--busy-nice 10`` runs them at the managed server's niceness.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from barge_in import ANSWERS, ROOM_GAIN
from common import busy, run, summary
from endpointing import wer_counts
from room import PULSE_LOG, PulseRoom, echo_gain, impulse_response, pulse_rig
from speech_sets import noise_bank, voices

from heisenberg.audio.echo import EchoCanceller, EchoReference
from heisenberg.audio.format import RATE_HZ, AudioChunk, resample
from heisenberg.core.config import Config
from heisenberg.core.events import VoiceInterrupt
from heisenberg.orchestrator.hearing import Hold, Release, Utterance, hearing_for
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.wakeword import OpenWakeWordEngine

if TYPE_CHECKING:  # imported in measure(), once the rig's PulseAudio is up
    from heisenberg.audio.sinks import SpeakerSink

SAID = ["What time is it in Tokyo?", "Stop.", "Wait, how tall is the Eiffel Tower?",
        "No, I meant the other one.", "Tell me more about that.", "Never mind.",
        "Who wrote the Odyssey?"]
ROOM_SOUND_RMS = 300.0
"""Room sound under the answers, RMS of 16-bit samples at the microphone (speech ~2000)."""


def voiced_at(samples: np.ndarray) -> float:
    """Seconds into ``samples`` where the voice begins: the first 10 ms within 20 dB of the
    loudest."""
    frames = samples[:len(samples) // 160 * 160].astype(np.float64).reshape(-1, 160)
    energy = np.mean(frames ** 2, axis=1)
    return int(np.argmax(energy > 0.01 * energy.max())) * 160 / RATE_HZ


def since(chunks: list[AudioChunk], at: float) -> list[AudioChunk]:
    """The chunks captured from ``at`` on (``time.monotonic()``)."""
    return [c for c in chunks if c.captured_at is not None and c.captured_at >= at]


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``c[lag] = sum a[i] b[i - lag]`` for every lag (negative lags at the end)."""
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    return np.fft.irfft(np.fft.rfft(a.astype(np.float64), n)
                        * np.conj(np.fft.rfft(b.astype(np.float64), n)), n)


def onset_in(tap: list[AudioChunk], said: np.ndarray, at: float) -> float:
    """Audio time (ms) at which ``said`` begins in the microphone's recording since ``at``:
    the peak of their cross-correlation (the user speaks straight into the room, so the
    clip is there as it was played, under the echo)."""
    chunks = since(tap, at)
    mic = np.concatenate([c.array() for c in chunks])
    corr = correlation(mic, said)
    return chunks[0].timestamp_ms + int(np.argmax(corr[:len(mic)])) * 1000 / RATE_HZ


def last_sounded(played: list[AudioChunk], at: float) -> float | None:
    """Capture time (``time.monotonic()``) of the end of the last audible sample the
    speaker's monitor recorded since ``at``."""
    chunks = since(played, at)
    if not chunks:
        return None
    loud = np.flatnonzero(np.abs(np.concatenate([c.array() for c in chunks]).astype(np.int32))
                          > 64)
    if not len(loud):
        return None
    # Chunks of one stream follow each other sample for sample (the capture clock moves in
    # whole steps only on a jump): the first chunk's time plus the position.
    return chunks[0].captured_at + (loud[-1] + 1) / RATE_HZ  # type: ignore[operator]


def room_delay(played: list[AudioChunk], tap: list[AudioChunk], at: float,
               before_ms: float) -> float | None:
    """Seconds from a sample sounding at the speaker's monitor to its echo's direct path at
    the microphone, both on their capture clocks: the lag of the best match of the first
    1.5 s of the answer (before the user speaks at ``before_ms``, mic audio time)."""
    ref, mic = since(played, at), since(tap, at)
    if not ref or not mic:
        return None
    r = np.concatenate([c.array() for c in ref])
    m = np.concatenate([c.array() for c in mic])
    n = min(int(1.5 * RATE_HZ), int((before_ms - mic[0].timestamp_ms) * RATE_HZ / 1000),
            len(r), len(m))
    if n < RATE_HZ // 4:
        return None
    cc = correlation(m[:n], r[:n])  # mic sample i is the echo of monitor sample i - lag
    lags = np.r_[np.arange(0, RATE_HZ // 2), np.arange(-(RATE_HZ // 2), 0)]
    k = int(np.argmax(np.abs(cc[lags])))
    return mic[0].captured_at - ref[0].captured_at + int(lags[k]) / RATE_HZ  # type: ignore[operator]


async def calibrate(room: PulseRoom, speaker: SpeakerSink, user: SpeakerSink,
                    heard: asyncio.Queue[tuple[AudioChunk, list[object]]],
                    rng: np.random.Generator) -> None:
    """Set the rig's echo gain to ``ROOM_GAIN``, as bench/barge_in.py does: the room's gain
    measured on noise played by ``speaker`` and heard through ``heard``."""
    await user.play(AudioChunk(np.zeros(RATE_HZ // 5, np.int16).tobytes(), RATE_HZ))
    await asyncio.sleep(1.0)
    room.set_gain(1.0)
    noise = (rng.standard_normal(2 * RATE_HZ) * 2000).astype(np.int16)
    while not heard.empty():
        heard.get_nowait()
    await speaker.play(AudioChunk(noise.tobytes(), RATE_HZ))
    await asyncio.sleep(0.5)
    got = []
    while not heard.empty():
        got.append(heard.get_nowait()[0].array())
    level = np.sqrt(np.mean(np.concatenate(got[-16:]).astype(np.float64) ** 2)) / 2000
    room.set_gain(ROOM_GAIN / float(level))


async def measure(args: argparse.Namespace) -> dict[str, object]:
    rng = np.random.default_rng(args.seed)
    base = Config()
    config = dataclasses.replace(base, session=dataclasses.replace(
        base.session, interrupt_speech_ms=args.speech_ms, interrupt_hold_ms=args.hold_ms))
    if args.headphones:
        config = dataclasses.replace(config, audio=dataclasses.replace(
            config.audio, echo_cancel="headphones"))
    tts = PiperTTS(config.tts)
    stt = WhisperSTT(config.stt)
    user_voices = [v for v in voices() if v.split == args.split]
    sounds = noise_bank(60.0)
    ir = impulse_response(rng)
    with (tempfile.TemporaryDirectory() as tmp, pulse_rig(Path(tmp), ir, 40.0) as env,
          busy(args.busy, args.busy_nice)):
        os.environ.update(env)
        import sounddevice as sd

        sd._terminate()  # PortAudio lists the devices once: make it look again
        sd._initialize()
        from heisenberg.audio.sinks import SpeakerSink
        from heisenberg.audio.sources import MicrophoneSource

        latency_s = (config.audio.output_latency_ms if args.speaker_latency_ms is None
                     else args.speaker_latency_ms) / 1000

        reference = EchoReference()
        canceller = (None if args.headphones else
                     EchoCanceller(reference, delay_ms=config.audio.echo_delay_ms))
        hearing = hearing_for(config, OpenWakeWordEngine(config.wakeword), canceller=canceller)
        speaker = SpeakerSink("hz_speaker", tts.rate_hz, latency_s=latency_s)
        speaker.reference = reference
        user = SpeakerSink("hz_room", RATE_HZ)
        mic = MicrophoneSource("hz_mic")
        heard: asyncio.Queue[tuple[AudioChunk, list[object]]] = asyncio.Queue()
        tap: list[AudioChunk] = []
        """The raw microphone, for timing on its own clock."""
        played: list[AudioChunk] = []
        """What the speaker really sounded (its sink's monitor), on a capture clock too."""

        async def record_played() -> None:
            async for chunk in MicrophoneSource("hz_played").chunks():
                played.append(chunk)
                del played[:-2000]

        async def listen() -> None:
            async for chunk in mic.chunks():
                playing = speaker.now_playing is not None
                tap.append(chunk)
                del tap[:-2000]
                items = await asyncio.to_thread(hearing.feed, chunk, playing=playing)
                for item in items:  # as the voice loop does, at once
                    if isinstance(item, Hold):
                        speaker.hold()
                    elif isinstance(item, Release):
                        speaker.release()
                await heard.put((chunk, items))

        room = PulseRoom(env, Path(tmp) / PULSE_LOG)
        reader = asyncio.create_task(listen())
        recorder = asyncio.create_task(record_played())
        await calibrate(room, speaker, user, heard, rng)
        if args.headphones:  # the user's level as in a room; the microphone hears no echo
            room.set_gain(0.0)

        async def trial(kind: str, k: int, level_db: float = 0.0) -> dict[str, object]:
            text = ANSWERS[k % len(ANSWERS)]
            answer = tts.synthesize(text)
            answer16 = resample(answer.array(), answer.rate_hz, RATE_HZ)
            while not heard.empty():
                heard.get_nowait()
            skips = room.skips()
            holds, releases = hearing.holds, hearing.releases
            playing = asyncio.create_task(speaker.play_text(answer, text))
            started = time.monotonic()
            row: dict[str, object] = {"kind": kind, "answer_s": round(answer.duration_ms / 1000,
                                                                      2)}
            speaking: asyncio.Task[None] | None = None
            said_text = ""
            if kind == "user":
                voice = user_voices[k % len(user_voices)]
                said_text = SAID[k % len(SAID)]
                said = await asyncio.to_thread(voice.render, said_text, rng)
                scale = ROOM_GAIN / echo_gain(answer16, said, ir, level_db, clip=False)
                said = np.clip(said * scale, -32768, 32767).astype(np.int16)
                row.update(voice=voice.name, level_db=level_db, said=said_text)
                wait_s = float(rng.uniform(2.0, 4.0))
            elif kind == "sound":
                name = sorted(sounds)[k % len(sounds)]
                bed = sounds[name].astype(np.float64)
                start = int(rng.integers(0, len(bed) - len(answer16) - RATE_HZ))
                bed = bed[start:start + len(answer16) + RATE_HZ]
                said = np.clip(bed * ROOM_SOUND_RMS / max(1.0, float(np.sqrt(np.mean(
                    bed ** 2)))), -32768, 32767).astype(np.int16)
                row.update(sound=name)
                wait_s = 0.0
            if kind != "answer":
                await asyncio.sleep(wait_s)
                speaking = asyncio.create_task(user.play(AudioChunk(said.tobytes(), RATE_HZ)))
                row["settled_when_spoken"] = canceller is None or canceller.settled
            interrupt: tuple[AudioChunk, VoiceInterrupt] | None = None
            question: Utterance | None = None
            deadline = started + answer.duration_ms / 1000 + 6.0
            finished = False
            while time.monotonic() < deadline and not finished:
                try:
                    async with asyncio.timeout(0.5):
                        chunk, items = await heard.get()
                except TimeoutError:
                    continue
                for item in items:
                    if isinstance(item, VoiceInterrupt) and interrupt is None:
                        interrupt = (chunk, item)
                        noticed = time.monotonic()
                        playing.cancel()  # as the voice loop does: the turn, then the sink
                        await asyncio.gather(playing, return_exceptions=True)
                        await speaker.stop()
                        stopped = time.monotonic()
                        finished = kind != "user"  # nobody asks anything: it is over
                    elif isinstance(item, Utterance):
                        question, finished = item, True
                if playing.done() and interrupt is None and (kind != "user" or (
                        speaking is not None and speaking.done())):
                    break
            await asyncio.gather(playing, return_exceptions=True)
            if speaking is not None:
                await speaking
            hearing.stop("bench")
            row["interrupted"] = interrupt is not None
            row["held"] = hearing.holds - holds
            row["released"] = hearing.releases - releases
            row["played_s"] = round(time.monotonic() - started, 2)
            if interrupt is not None:
                chunk, event = interrupt
                decided = chunk.timestamp_ms + round(chunk.duration_ms)
                row["decided_after_onset_ms"] = decided - event.onset_ms
                if kind == "user":
                    # On the microphone's own clock: where the user's voice is in what it
                    # recorded, and when the answer's last sample reached it (the speaker's
                    # clock plus the delay the canceller tracks, which aligns the two to
                    # the sample).
                    onset_ms = onset_in(tap, said, started) + voiced_at(said) * 1000
                    assert chunk.captured_at is not None
                    if canceller is not None:
                        last_ms = chunk.timestamp_ms + 1000 * (
                            speaker.sounding_until + canceller.stats.delay_ms / 1000
                            - chunk.captured_at)
                        row["stopped_after_onset_ms_sink_clock"] = round(last_ms - onset_ms)
                    # Measured: the last sample that really sounded (the speaker's monitor),
                    # moved to the microphone by the room's delay, which the echo of the
                    # answer's start in the raw microphone gives to the sample.
                    await asyncio.sleep(0.5)  # the monitor's last chunks arrive
                    sounded = last_sounded(played, started)
                    # With headphones there is no echo to align the two clocks by: both
                    # are PulseAudio captures on the monotonic clock, taken as they are.
                    shift = (0.0 if canceller is None
                             else room_delay(played, tap, started, onset_ms))
                    if sounded is not None and shift is not None:
                        at_mic_ms = chunk.timestamp_ms + 1000 * (sounded + shift
                                                                 - chunk.captured_at)
                        row["stopped_after_onset_ms"] = round(at_mic_ms - onset_ms)
                        row["room_delay_ms"] = round(shift * 1000, 1)
                        # At the speaker itself: the rig's room (a loopback with its own
                        # buffers, ~40-80 ms) is no part of what a user hears, whose voice
                        # reaches the microphone at once and who hears the speaker stop.
                        row["stopped_after_onset_ms_at_speaker"] = round(
                            at_mic_ms - onset_ms - shift * 1000)
                    row["decided_after_voice_ms"] = round(decided - onset_ms)
                    row["early"] = decided < onset_ms
                    # Where the time goes after the decision: the chunk reaching the hearing
                    # and its verdict the loop; the speaker's buffer.
                    row["noticed_after_capture_ms"] = round(1000 * (
                        noticed - chunk.captured_at - chunk.duration_ms / 1000))
                    row["sounded_after_stop_ms"] = round(1000 * (speaker.sounding_until
                                                                 - stopped))
            if question is not None:
                text_heard = await asyncio.to_thread(stt.transcribe, question.samples)
                row["heard"] = text_heard
                row["wer"] = wer_counts(said_text, text_heard)
            await asyncio.sleep(1.0)
            row["rig_skips"] = room.skips() - skips  # the rig's echo path ran dry
            return row

        rows = [await trial("answer", 0) | {"first": True}]
        for level in args.levels_db:
            for k in range(args.samples):
                rows.append(await trial("user", k, level))
                print(rows[-1], file=sys.stderr, flush=True)
        for k in range(args.samples):
            rows.append(await trial("answer", k + 1))
            rows.append(await trial("sound", k))
            print(rows[-2:], file=sys.stderr, flush=True)
        reader.cancel()
        recorder.cancel()
        await asyncio.gather(reader, recorder, return_exceptions=True)
        underflows = speaker.underflows
        await speaker.close()
        await user.close()
    return summarize(rows, args, canceller, latency_s, underflows)


def summarize(rows: list[dict[str, object]], args: argparse.Namespace,
              canceller: EchoCanceller | None, speaker_latency_s: float,
              underflows: int) -> dict[str, object]:
    def users(level: float) -> list[dict[str, object]]:
        return [r for r in rows if r["kind"] == "user" and r["level_db"] == level]

    def per_hour(sel: list[dict[str, object]]) -> dict[str, float]:
        hours = sum(float(r["played_s"]) for r in sel) / 3600
        n = sum(bool(r["interrupted"]) for r in sel)
        return {"interruptions": n, "hours": round(hours, 4),
                "per_hour": round(n / hours, 1) if hours else 0.0,
                # Held for nothing: a pause of interrupt_hold_ms in the answer.
                "answers_held_for_nothing": sum(bool(r["released"]) for r in sel)}

    levels = [float(x) for x in args.levels_db]
    stopped = [float(r["stopped_after_onset_ms"]) for r in rows  # type: ignore[arg-type]
               if "stopped_after_onset_ms" in r and not r.get("early")]
    # The same end as the speaker's own clock puts it (what the daemon logs).
    by_sink = [float(r["stopped_after_onset_ms_sink_clock"]) for r in rows  # type: ignore[arg-type]
               if "stopped_after_onset_ms_sink_clock" in r and not r.get("early")]
    at_speaker = [float(r["stopped_after_onset_ms_at_speaker"]) for r in rows  # type: ignore[arg-type]
                  if "stopped_after_onset_ms_at_speaker" in r and not r.get("early")]
    delays = [float(r["room_delay_ms"]) for r in rows if "room_delay_ms" in r]  # type: ignore[arg-type]
    decided = [float(r["decided_after_onset_ms"]) for r in rows  # type: ignore[arg-type]
               if r["kind"] == "user" and "decided_after_onset_ms" in r]
    wer = [r["wer"] for r in rows if "wer" in r]
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "interrupt_speech_ms": args.speech_ms, "samples_each": args.samples,
        "interrupt_hold_ms": args.hold_ms,
        "users_held_then_released": sum(bool(r["released"]) for r in rows
                                        if r["kind"] == "user"),
        "seed": args.seed, "split": args.split,
        "voices": sorted({str(r["voice"]) for r in rows if "voice" in r}),
        "interrupted_by_level_db": {
            f"{lv:g}": round(sum(bool(r["interrupted"]) and not r.get("early")
                                 for r in users(lv)) / max(1, len(users(lv))), 3)
            for lv in levels},
        "stopped_after_onset_ms": summary(stopped) if stopped else None,
        "stopped_after_onset_ms_sink_clock": summary(by_sink) if by_sink else None,
        "stopped_after_onset_ms_at_speaker": summary(at_speaker) if at_speaker else None,
        "stopped_at_speaker_within_300_ms": round(
            sum(s <= 300 for s in at_speaker) / len(at_speaker), 3) if at_speaker else None,
        "room_delay_ms": summary(delays) if delays else None,
        "stopped_within_300_ms": round(sum(s <= 300 for s in stopped) / len(stopped), 3)
        if stopped else None,
        "decided_after_onset_ms_audio": summary(decided) if decided else None,
        "question_wer_percent": round(100 * sum(e for e, _ in wer)  # type: ignore[misc]
                                      / max(1, sum(n for _, n in wer)), 1),  # type: ignore[misc]
        "false_interruptions": {
            "first_answer_after_start": bool(rows[0]["interrupted"]),
            "own_voice": per_hour([r for r in rows[1:] if r["kind"] == "answer"]),
            "room_sound": per_hour([r for r in rows if r["kind"] == "sound"]),
            "room_sound_rms": ROOM_SOUND_RMS,
            "user_before_speaking": sum(bool(r.get("early")) for r in rows),
        },
        "headphones": args.headphones,
        "tracked_delay_ms": None if canceller is None else round(canceller.stats.delay_ms, 1),
        "speaker_latency_ms": round(speaker_latency_s * 1000),
        "busy_processes": args.busy, "busy_nice": args.busy_nice,
        "speaker_underflows": underflows,
        "rig_skips": sum(r["rig_skips"] for r in rows),  # type: ignore[misc]
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speech-ms", type=int, default=96)
    ap.add_argument("--hold-ms", type=int, default=Config().session.interrupt_hold_ms,
                    help="session.interrupt_hold_ms (default: the config's; 0 = no hold)")
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("--levels-db", type=float, nargs="+", default=[-6, 0, 6])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--split", choices=("test", "dev"), default="test",
                    help="the users' voices: test (never tuned on) or dev")
    ap.add_argument("--speaker-latency-ms", type=float, default=None,
                    help="the speaker's device buffer (default: audio.output_latency_ms)")
    ap.add_argument("--busy", type=int, default=0,
                    help="processes computing meanwhile, one core each (an LLM generating)")
    ap.add_argument("--busy-nice", type=int, default=0,
                    help="their niceness (the managed server runs at server.nice, 10)")
    ap.add_argument("--headphones", action="store_true",
                    help='audio.echo_cancel = "headphones": no canceller, and the microphone '
                         'hears no echo (the user speaks at the same level)')
    ap.add_argument("--out", default="bench/results/interrupt.json")
    run(measure, ap)


if __name__ == "__main__":
    main()
