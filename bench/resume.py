"""Benchmark: a speaker who goes on after the end of their question was decided
(``stt.resume_window_ms``), while the answer already plays, on the real-time room rig
(bench/room.py).

    python bench/resume.py [--samples 8] [--levels-db -6 0 6] [--pause-s 1.0]
                           [--split test] [--out bench/results/resume.json]

The user (voices the defaults were not tuned on) says the first half of a question that
reads finished ("Describe what you see on my desk,"), pauses, and goes on ("starting with
the objects on the left."). Listening starts as after a wake word; a hearing built like the
daemon's (default config, echo cancellation) decides the end; at that moment the answer
(Piper joe, the assistant's own voice) starts on the rig's speaker, as the early answer does
in the daemon. When the hearing says the question goes on (VOICE_INTERRUPT with
``continues``) the bench does what the voice loop does: it cancels the answer and stops the
speaker; the hearing then hears the question to its end. Measured, at each level of the
echo over the user's voice:

- questions ended in the pause, then joined again, and the word error rate of the whole
  question heard at the end (against what was said);
- the decision after the onset of the rest of the question (audio time), and the answer's
  end by the speaker's own clock (its DAC time plus the canceller's delay) after that onset;
- the first question of the run, before the canceller has heard any answer (it cannot tell
  the user from the answer yet: the rest is lost, as without the window), on its own;
- whole questions with nobody going on, and with real recorded room sound (music, machine
  noise, foreign babble) starting under the answer: continuations that were not (the
  answer would stop and start again).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from barge_in import ANSWERS, ROOM_GAIN
from common import run, summary
from endpointing import voiced_bounds, wer_counts
from interrupt import ROOM_SOUND_RMS, calibrate, onset_in, voiced_at
from room import PULSE_LOG, PulseRoom, echo_gain, impulse_response, pulse_rig
from speech_sets import noise_bank, voices

from heisenberg.audio.echo import EchoCanceller, EchoReference
from heisenberg.audio.format import RATE_HZ, AudioChunk, resample
from heisenberg.core.config import Config
from heisenberg.core.events import VoiceInterrupt
from heisenberg.orchestrator.hearing import Utterance, hearing_for
from heisenberg.orchestrator.voice import FOLLOW_UP_ECHO_S
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.wakeword import OpenWakeWordEngine

HALVES = [  # (a first half that reads finished, the rest)
    ("Describe what you see on my desk,", "starting with the objects on the left."),
    ("What is the tallest mountain in Europe,", "and how high is it?"),
    ("Tell me the weather for tomorrow,", "and for the weekend too."),
    ("Play some music,", "something calm for reading."),
    ("Remind me to buy milk,", "when I get home tonight."),
    ("How far away is the moon,", "in kilometres?"),
    ("Turn on the lights,", "in the kitchen only."),
    ("Who wrote the Odyssey,", "and when was it written?"),
]


async def measure(args: argparse.Namespace) -> dict[str, object]:
    rng = np.random.default_rng(args.seed)
    config = Config()
    tts = PiperTTS(config.tts)
    stt = WhisperSTT(config.stt)
    user_voices = [v for v in voices() if v.split == args.split]
    sounds = noise_bank(60.0)
    ir = impulse_response(rng)
    with tempfile.TemporaryDirectory() as tmp, pulse_rig(Path(tmp), ir, 40.0) as env:
        os.environ.update(env)
        import sounddevice as sd

        sd._terminate()  # PortAudio lists the devices once: make it look again
        sd._initialize()
        from heisenberg.audio.sinks import SpeakerSink
        from heisenberg.audio.sources import MicrophoneSource

        reference = EchoReference()
        canceller = EchoCanceller(reference, delay_ms=config.audio.echo_delay_ms)
        hearing = hearing_for(config, OpenWakeWordEngine(config.wakeword), canceller=canceller)
        speaker = SpeakerSink("hz_speaker", tts.rate_hz,
                              latency_s=config.audio.output_latency_ms / 1000)
        speaker.reference = reference
        user = SpeakerSink("hz_room", RATE_HZ)
        mic = MicrophoneSource("hz_mic")
        heard: asyncio.Queue[tuple[AudioChunk, list[object]]] = asyncio.Queue()
        tap: list[AudioChunk] = []
        start_listening = [False]

        async def listen() -> None:
            async for chunk in mic.chunks():
                playing = speaker.now_playing is not None
                tap.append(chunk)
                del tap[:-2000]
                if start_listening[0]:  # as after a wake word, between two feeds
                    start_listening[0] = False
                    hearing.start(chunk.timestamp_ms)
                items = await asyncio.to_thread(
                    hearing.feed, chunk, playing=playing,
                    echoing=playing or bool(speaker.hearing(FOLLOW_UP_ECHO_S)))
                await heard.put((chunk, items))

        room = PulseRoom(env, Path(tmp) / PULSE_LOG)
        reader = asyncio.create_task(listen())
        await calibrate(room, speaker, user, heard, rng)
        await asyncio.sleep(1.0)

        async def trial(kind: str, k: int, level_db: float = 0.0) -> dict[str, object]:
            text = ANSWERS[k % len(ANSWERS)]
            answer = tts.synthesize(text)
            answer16 = resample(answer.array(), answer.rate_hz, RATE_HZ)
            voice = user_voices[k % len(user_voices)]
            first, rest = HALVES[k % len(HALVES)]
            a = await asyncio.to_thread(voice.render, first, rng)
            b = await asyncio.to_thread(voice.render, rest, rng)
            a = a[:voiced_bounds(a)[1] + 480]
            b = b[max(0, voiced_bounds(b)[0] - 480):]
            pause_s = args.pause_s if kind in ("paused", "first") else 0.2
            said = np.concatenate([a, np.zeros(int(pause_s * RATE_HZ), np.int16), b])
            if kind != "paused":  # whole questions (and the first one) ask at 0 dB
                level_db = 0.0
            said = np.clip(said * ROOM_GAIN / echo_gain(answer16, said, ir, level_db,
                                                        clip=False),
                           -32768, 32767).astype(np.int16)
            rest_heard = said[len(said) - len(b):]
            row: dict[str, object] = {"kind": kind, "voice": voice.name, "level_db": level_db,
                                      "said": f"{first} {rest}", "pause_s": pause_s}
            while not heard.empty():
                heard.get_nowait()
            skips = room.skips()
            start_listening[0] = True
            started = time.monotonic()
            speaking = asyncio.create_task(user.play(AudioChunk(said.tobytes(), RATE_HZ)))
            playing: asyncio.Task[None] | None = None
            sound: asyncio.Task[None] | None = None
            ended: Utterance | None = None
            went_on: tuple[AudioChunk, VoiceInterrupt] | None = None
            whole: Utterance | None = None
            settled: list[bool] = []
            """The canceller's state at each chunk after the end, within the window."""
            deadline = started + len(said) / RATE_HZ + answer.duration_ms / 1000 + 4.0
            while time.monotonic() < deadline and whole is None:
                try:
                    async with asyncio.timeout(0.5):
                        chunk, items = await heard.get()
                except TimeoutError:
                    continue
                if ended is not None and went_on is None and len(settled) < window_chunks:
                    settled.append(canceller.settled)
                for item in items:
                    if isinstance(item, Utterance) and ended is None:
                        ended = item
                        row["ended_at_ms"] = chunk.timestamp_ms + round(chunk.duration_ms)
                        row["settled_at_end"] = canceller.settled
                        # The early answer is ready: it plays at once.
                        playing = asyncio.create_task(speaker.play_text(answer, text))
                        if kind == "sound":
                            name = sorted(sounds)[k % len(sounds)]
                            bed = sounds[name].astype(np.float64)
                            at = int(rng.integers(0, len(bed) - len(answer16)))
                            bed = bed[at:at + len(answer16)]
                            bed = np.clip(bed * ROOM_SOUND_RMS / max(1.0, float(np.sqrt(
                                np.mean(bed ** 2)))), -32768, 32767).astype(np.int16)
                            row["sound"] = name
                            sound = asyncio.create_task(
                                user.play(AudioChunk(bed.tobytes(), RATE_HZ)))
                    elif isinstance(item, VoiceInterrupt) and item.continues:
                        went_on = (chunk, item)
                        if playing is not None:
                            playing.cancel()  # as the voice loop does: the turn, the sink
                            await asyncio.gather(playing, return_exceptions=True)
                        await speaker.stop()
                    elif isinstance(item, Utterance) and went_on is not None:
                        whole = item
                if (ended is not None and went_on is None and playing is not None
                        and playing.done() and speaking.done()):
                    break  # the answer played out and nobody went on
            for task in (playing, speaking, sound):
                if task is not None:
                    await asyncio.gather(task, return_exceptions=True)
            hearing.stop("bench")
            # Where the rest begins in the microphone's audio time (its own correlation peak:
            # the whole clip's peak can fall on the first half under the answer's echo).
            rest_onset_ms = (onset_in(tap, rest_heard, started)
                             + voiced_at(rest_heard) * 1000)
            row["ended"] = ended is not None
            row["settled_in_window"] = round(float(np.mean(settled)), 2) if settled else None
            if ended is not None:
                row["ended_in_pause"] = int(row["ended_at_ms"]) < rest_onset_ms  # type: ignore[call-overload]
            row["continued"] = went_on is not None
            if went_on is not None:
                chunk, event = went_on
                decided = chunk.timestamp_ms + round(chunk.duration_ms)
                row["decided_after_rest_ms"] = round(decided - rest_onset_ms)
                row["decided_after_end_ms"] = decided - int(row["ended_at_ms"])  # type: ignore[call-overload]
                assert chunk.captured_at is not None
                last_ms = chunk.timestamp_ms + 1000 * (
                    speaker.sounding_until + canceller.stats.delay_ms / 1000 - chunk.captured_at)
                row["stopped_after_rest_ms_sink_clock"] = round(last_ms - rest_onset_ms)
            final = whole or ended
            if final is not None:
                heard_text = await asyncio.to_thread(stt.transcribe, final.samples)
                row["heard"] = heard_text
                row["wer"] = wer_counts(f"{first} {rest}", heard_text)
            await asyncio.sleep(1.0)
            row["rig_skips"] = room.skips() - skips
            print(row, file=sys.stderr, flush=True)
            return row

        window_chunks = config.stt.resume_window_ms // 80
        rows = [await trial("first", 0)]
        for level in args.levels_db:
            for k in range(args.samples):
                rows.append(await trial("paused", k, level))
        for k in range(args.samples):
            rows.append(await trial("whole", k))
            rows.append(await trial("sound", k))
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await speaker.close()
        await user.close()
    return summarize(rows, args, canceller)


def summarize(rows: list[dict[str, object]], args: argparse.Namespace,
              canceller: EchoCanceller) -> dict[str, object]:
    def paused(level: float) -> list[dict[str, object]]:
        return [r for r in rows if r["kind"] == "paused" and r["level_db"] == level]

    def share(sel: list[dict[str, object]], key: str) -> float:
        return round(sum(bool(r.get(key)) for r in sel) / max(1, len(sel)), 3)

    in_pause = [r for r in rows if r["kind"] == "paused" and r.get("ended_in_pause")]
    decided = [float(r["decided_after_rest_ms"]) for r in in_pause  # type: ignore[arg-type]
               if "decided_after_rest_ms" in r]
    stopped = [float(r["stopped_after_rest_ms_sink_clock"]) for r in in_pause  # type: ignore[arg-type]
               if "stopped_after_rest_ms_sink_clock" in r]
    wer = [r["wer"] for r in rows if r["kind"] == "paused" and "wer" in r]
    joined = [r["wer"] for r in rows if r["kind"] == "paused" and r["continued"] and "wer" in r]
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "resume_window_ms": Config().stt.resume_window_ms, "pause_s": args.pause_s,
        "samples_each": args.samples, "seed": args.seed, "split": args.split,
        "voices": sorted({str(r["voice"]) for r in rows}),
        "ended_in_pause_by_level_db": {
            f"{lv:g}": share(paused(lv), "ended_in_pause") for lv in args.levels_db},
        "joined_of_those_by_level_db": {
            f"{lv:g}": share([r for r in paused(lv) if r.get("ended_in_pause")], "continued")
            for lv in args.levels_db},
        "decided_after_rest_onset_ms_audio": summary(decided) if decided else None,
        "answer_stopped_after_rest_onset_ms_sink_clock": summary(stopped) if stopped else None,
        "question_wer_percent": round(100 * sum(e for e, _ in wer)  # type: ignore[misc]
                                      / max(1, sum(n for _, n in wer)), 1),  # type: ignore[misc]
        "joined_question_wer_percent": round(100 * sum(e for e, _ in joined)  # type: ignore[misc]
                                             / max(1, sum(n for _, n in joined)), 1),  # type: ignore[misc]
        "settled_through_the_window": sum(r.get("settled_in_window") == 1.0 for r in rows
                                          if r["kind"] == "paused"),
        "first_question_of_the_run": {k: rows[0].get(k) for k in (
            "ended_in_pause", "settled_at_end", "continued", "heard")},
        "false_continuations": {
            "whole_questions": sum(bool(r["continued"]) for r in rows if r["kind"] == "whole"),
            "with_room_sound": sum(bool(r["continued"]) for r in rows if r["kind"] == "sound"),
            "of_each": args.samples, "room_sound_rms": ROOM_SOUND_RMS},
        "tracked_delay_ms": round(canceller.stats.delay_ms, 1),
        "rig_skips": sum(r["rig_skips"] for r in rows),  # type: ignore[misc]
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--levels-db", type=float, nargs="+", default=[-6, 0, 6])
    ap.add_argument("--pause-s", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--split", choices=("test", "dev"), default="test",
                    help="the users' voices: test (never tuned on) or dev")
    ap.add_argument("--out", default="bench/results/resume.json")
    run(measure, ap)


if __name__ == "__main__":
    main()
