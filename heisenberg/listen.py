"""``heisenberg listen``: the hearing path alone, to see why it did or did not wake.

Wake word (all its stages) → end of speech → speech-to-text, with the daemon's own ``Hearing``
built from the same config, on one continuous stream; no LLM and no speech output. A file
is processed as fast as possible in audio time, so what it prints does not depend on the
machine's speed. ``--json`` prints one object per line (schema in docs/VOICE.md):
``{"event": "wake" | "speech_start" | "speech_end" | "no_speech" | "transcript",
"audio_s": seconds from the start of the input, "turn": id, ...}``.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from heisenberg.audio.format import AudioChunk
from heisenberg.audio.sources import AudioSource, FileSource, MicrophoneSource
from heisenberg.core.config import Config
from heisenberg.core.errors import AudioDeviceError
from heisenberg.core.events import SpeechStarted, TurnEnded, VoiceInterrupt, WakewordDetected
from heisenberg.orchestrator.hearing import (
    Heard,
    Hearing,
    Pause,
    Rejected,
    Utterance,
    hearing_for,
)
from heisenberg.voice.stt import SpeechToText
from heisenberg.voice.wakeword import WakeWordEngine, question_in, wake_word_text

Record = dict[str, Any]


class Listener:
    """Chunks in, records out (dicts with ``event``, ``audio_s``, ``turn``). Synchronous:
    the caller runs it off the event loop."""

    def __init__(self, hearing: Hearing, stt: SpeechToText) -> None:
        self.hearing = hearing
        self.stt = stt
        self.words = [wake_word_text(name) for name in hearing.wake.names]
        self.turns = 0
        self._ids: dict[str, str] = {}
        self._continuing = ""

    def feed(self, chunk: AudioChunk) -> list[Record]:
        return self._records(self.hearing.feed(chunk), chunk)

    def finish(self, end_ms: int) -> list[Record]:
        """The input ended at ``end_ms``: a question being heard ends there."""
        return self._records(self.hearing.finish(), None, end_ms)

    def _turn(self, turn_id: str) -> str:
        if turn_id not in self._ids:
            self.turns += 1
            self._ids[turn_id] = str(self.turns)
        return self._ids[turn_id]

    def _records(self, heard: list[Heard], chunk: AudioChunk | None,
                 end_ms: int = 0) -> list[Record]:
        if chunk is not None:
            end_ms = chunk.timestamp_ms + round(chunk.duration_ms)
        start_ms = self.hearing.listen_start_ms
        out: list[Record] = []
        for item in heard:
            if isinstance(item, Rejected):
                d = item.detection
                out.append(_wake(d.model, d.score, d.verdict, d.audio_ms, "", False,
                                 d.transcript, check=d.check))
            elif isinstance(item, WakewordDetected):
                out.append(_wake(item.model, item.score, item.verifier, end_ms,
                                 self._turn(item.turn_id), True, item.transcript, item.stage,
                                 item.check))
            elif isinstance(item, VoiceInterrupt) and item.continues:
                self._continuing = item.turn_id
                out.append({"event": "continued", "audio_s": _s(end_ms),
                            "turn": self._turn(item.turn_id),
                            "continues": self._turn(item.continues)})
            elif isinstance(item, SpeechStarted):
                first_s = self.hearing.endpointer.speech_start_at_s or 0.0
                out.append({"event": "speech_start", "audio_s": _s(start_ms + first_s * 1000),
                            "turn": self._turn(item.turn_id)})
            elif isinstance(item, TurnEnded) and item.outcome == "no_speech":
                out.append({"event": "no_speech", "audio_s": _s(end_ms),
                            "turn": self._turn(item.turn_id)})
            elif isinstance(item, Pause) and item.text is not None:
                out.append({"event": "pause", "audio_s": _s(end_ms),
                            "turn": self._turn(item.turn_id), "text": item.text,
                            "unfinished": item.unfinished})
            elif isinstance(item, Utterance):
                turn = self._turn(item.turn_id)
                at = _s(start_ms + item.ended.audio_ms)
                out.append({"event": "speech_end", "audio_s": at, "turn": turn,
                            "reason": item.ended.reason})
                text = question_in(self.stt.transcribe(item.samples), *self.words,
                                   went_on=item.turn_id == self._continuing)
                out.append({"event": "transcript", "audio_s": at, "turn": turn, "text": text})
        return out


def _s(ms: float) -> float:
    return round(ms / 1000, 3)


def _wake(model: str, score: float, verdict: float | None, at_ms: float, turn: str,
          confirmed: bool, transcript: str | None, stage: str | None = None,
          check: float | None = None) -> Record:
    record: Record = {"event": "wake", "audio_s": _s(at_ms), "turn": turn or None,
                      "model": model, "score": round(score, 3), "confirmed": confirmed}
    if stage is not None:
        record["stage"] = stage
    if verdict is not None:
        record["verifier"] = round(verdict, 3)
    if check is not None:
        record["check"] = round(check, 3)
    if transcript is not None:
        record["heard"] = transcript
    return record


def describe(record: Record) -> str:
    """One human-readable line."""
    at = f"{record['audio_s']:8.2f} s  "
    event = record["event"]
    if event == "wake":
        verifier = f", verifier {record['verifier']:.2f}" if "verifier" in record else ""
        heard = f", check {record['check']:.2f}" if "check" in record else ""
        heard += f", heard {record['heard']!r}" if "heard" in record else ""
        what = "wake word" if record["confirmed"] else "rejected candidate"
        return f"{at}{what}: {record['model']} (score {record['score']:.2f}{verifier}{heard})"
    if event == "speech_start":
        return f"{at}speech started"
    if event == "continued":
        return f"{at}the question of turn {record['continues']} goes on"
    if event == "speech_end":
        return f"{at}speech ended ({record['reason'].replace('_', ' ')})"
    if event == "pause":
        wait = "unfinished: waiting" if record["unfinished"] else "finished"
        return f"{at}pause after {record['text']!r} ({wait})"
    if event == "no_speech":
        return f"{at}woken, but nobody spoke"
    return f"{at}heard: {record['text']!r}" if record["text"] else f"{at}heard nothing intelligible"


async def listen(config: Config, wake: WakeWordEngine, stt: SpeechToText,
                 source: AudioSource, emit: Callable[[Record], None],
                 live: Callable[[AudioChunk, list[float]], None] | None = None) -> int:
    """Hear ``source`` to its end; every record goes to ``emit``. Returns the turns heard."""
    listener = Listener(hearing_for(config, wake, transcribe=stt.transcribe), stt)
    end_ms = 0
    async for chunk in source.chunks():
        for record in await asyncio.to_thread(listener.feed, chunk):
            emit(record)
        end_ms = chunk.timestamp_ms + round(chunk.duration_ms)
        if live is not None:
            live(chunk, list(getattr(getattr(wake, "inner", wake), "last_scores", [])))
    for record in await asyncio.to_thread(listener.finish, end_ms):
        emit(record)
    return listener.turns


def level_dbfs(chunk: AudioChunk) -> float:
    rms = float(np.sqrt(np.mean(chunk.array().astype(np.float64) ** 2)))
    return 20 * math.log10(max(rms, 1.0) / 32768)


async def cmd_listen(config: Config, input_path: str | None, as_json: bool) -> int:
    from heisenberg.main import load_voice_engines
    from heisenberg.voice_cli import check_devices

    try:
        check_devices(input_path, "-")  # a readable WAV, or PortAudio for the microphone
    except AudioDeviceError as exc:
        print(f"heisenberg listen: {exc.message}", file=sys.stderr)
        return 1
    engines = await load_voice_engines(config)
    source: AudioSource = FileSource(input_path, tail_silence_s=0.0) if input_path else \
        MicrophoneSource(config.audio.input_device)
    live_line = not as_json and not input_path and sys.stdout.isatty()

    def emit(record: Record) -> None:
        if live_line:
            print("\r\033[K", end="")
        print(json.dumps(record) if as_json else describe(record), flush=True)

    def live(chunk: AudioChunk, scores: list[float]) -> None:
        score = max(scores, default=0.0)
        print(f"\r\033[Klevel {level_dbfs(chunk):6.1f} dBFS   wake score {score:.2f}", end="",
              flush=True)

    if not input_path:  # on stderr, also with --json: stdout is only the records
        names = ", ".join(engines.wake.names)
        print(f"listening for {names} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        await listen(config, engines.wake, engines.stt, source, emit,
                     live if live_line else None)
    except AudioDeviceError as exc:
        print(f"heisenberg listen: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await source.close()
        engines.wake.close()
    return 0
