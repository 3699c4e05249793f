"""Timers in the hands-free loop, in real time on the real models: set by voice, heard (the
alarm and the announcement) while idle, stopped by a plain "stop" said after a ring; a timer
that ends while the user speaks rings once the turn has ended. Voices: flite (not the tuned
Piper voice) for what the user says."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from heisenberg.audio.format import RATE_HZ, AudioChunk, write_wav
from heisenberg.audio.sinks import WavFileSink
from heisenberg.audio.sources import FileSource
from heisenberg.core.bus import EventBus
from heisenberg.core.config import Config, LLMConfig
from heisenberg.core.events import (
    Event,
    LLMComplete,
    SpeechEnded,
    TimerEnded,
    TimerRinging,
    TimerStarted,
    TurnEnded,
    WakewordDetected,
)
from heisenberg.core.states import State
from heisenberg.core.tasks import cancel_and_wait
from heisenberg.llm.stream import LlamaCppLLM
from heisenberg.orchestrator.assistant import Assistant
from heisenberg.orchestrator.hearing import Utterance
from heisenberg.orchestrator.ringing import alarm
from heisenberg.orchestrator.turn import CONTINUED
from heisenberg.orchestrator.voice import VoiceLoop
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.wakeword import OpenWakeWordEngine
from tests.conftest import RunningServer, flite, silence, speech
from tests.test_voice_real import record

pytestmark = pytest.mark.usefixtures("close_llms")


class SpeakerSpy(WavFileSink):
    """A real-time file speaker that notes what it played and what the loop was doing
    then."""

    def __init__(self, path: Path, rate_hz: int) -> None:
        super().__init__(path, rate_hz, realtime=True)
        self.loop: VoiceLoop | None = None
        self.played: list[tuple[str, State, bool]] = []
        """(``alarm``, the text said, or ``sound``; the state; a voice turn was on)."""
        self._alarm = alarm(rate_hz).pcm

    def note(self, what: str) -> None:
        assert self.loop is not None
        self.played.append((what, self.loop.state, self.loop._in_voice_turn()))

    async def play_text(self, chunk: AudioChunk, text: str) -> None:
        self.note(text)
        await super().play_text(chunk, text)

    async def play(self, chunk: AudioChunk) -> None:
        if chunk.pcm == self._alarm:
            self.note("alarm")
        await super().play(chunk)


def timer_loop(server: RunningServer, tts: PiperTTS, stt: WhisperSTT, wav: Path,
               ring_s: float, tmp_path: Path) -> tuple[VoiceLoop, SpeakerSpy, list[Event]]:
    base = Config(llm=LLMConfig(url=server.url, max_tokens=24, temperature=0.0))
    config = dataclasses.replace(base, skills=dataclasses.replace(base.skills,
                                                                  timer_ring_s=ring_s))
    bus = EventBus()
    events = record(bus)
    sink = SpeakerSpy(tmp_path / "played.wav", tts.rate_hz)
    loop = VoiceLoop(Assistant(config, bus, LlamaCppLLM(config.llm, server.url)),
                     FileSource(wav, realtime=True), sink,
                     OpenWakeWordEngine(config.wakeword), stt, tts)
    sink.loop = loop
    return loop, sink, events


async def test_a_timer_set_by_voice_rings_and_stop_ends_it(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    # "Stop." again and again: one falls in the listening window after a ring, however
    # late the ring comes on a slow machine. One that the window's start cuts can be misheard
    # (whisper wrote "Tap." in a loaded run) and asked like any question: only the first LLM
    # turn is the timer's.
    stops = [np.concatenate([flite("Stop.", "slt"), silence(1.5)]) for _ in range(8)]
    wav = tmp_path / "timer.wav"
    write_wav(wav, np.concatenate([
        silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
        flite("Set a timer for two seconds.", "rms"), silence(5.0), *stops, silence(3.0)]),
        RATE_HZ)
    loop, sink, events = timer_loop(llama_server, tts, stt, wav, 60.0, tmp_path)
    turns = await loop.run()
    await loop.bus.drain()
    assert "timer" in turns[0].transcript.lower()
    completed = [e for e in events if isinstance(e, LLMComplete)]
    assert completed, [(t.transcript, t.outcome and t.outcome.answer) for t in turns]
    done = completed[0]
    assert all("timer" not in t.transcript.lower() for t in turns[1:])
    assert done.stop_reason == "skill:HassStartTimer" and done.text == "Timer set for 2 seconds."
    timer_events = [e for e in events if isinstance(e, TimerStarted | TimerRinging | TimerEnded)]
    assert [type(e) for e in timer_events] == [TimerStarted, TimerRinging, TimerEnded]
    ended = timer_events[2]
    assert isinstance(ended, TimerEnded) and ended.reason in ("stop", "voice"), ended
    assert not loop.assistant.timers.all()
    # Heard while idle: the alarm, then the announcement; then it listened for "stop".
    rings = [(what, state) for what, state, _ in sink.played
             if what in ("alarm", "Your 2 second timer is done.")]
    assert rings[:2] == [("alarm", State.IDLE), ("Your 2 second timer is done.", State.IDLE)]
    assert loop.ringer.rings >= 1
    # The set-timer question is in the history, answered by the skill.
    assert [t.assistant for t in loop.assistant.session.get_conversation_history()][:1] == \
        ["Timer set for 2 seconds."]


async def test_a_timer_that_ends_while_the_user_speaks_rings_after_the_turn(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    wav = tmp_path / "busy.wav"
    write_wav(wav, np.concatenate([
        silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
        flite("What is the capital of France?", "rms"), silence(16.0)]), RATE_HZ)
    # The answer is played in real time: the limit (5 s from the first ring heard) falls
    # within the 16 s after the question on a slow machine too.
    loop, sink, events = timer_loop(llama_server, tts, stt, wav, 5.0, tmp_path)
    timers = loop.assistant.timers

    async def set_on_wake(event: Event) -> None:  # the timer ends while they speak
        if isinstance(event, WakewordDetected):
            timers.add(1.0, "tea")

    loop.bus.subscribe(set_on_wake, name="set-timer")
    [turn] = await loop.run()
    await loop.bus.drain()
    assert turn.outcome is not None and turn.outcome.answer
    order = [type(e) for e in events if isinstance(e, TimerRinging | TimerEnded)
             or isinstance(e, TurnEnded) and e.turn_id == turn.turn_id]
    assert order == [TimerRinging, TurnEnded, TimerEnded]  # it rang during the turn
    # After each ring it listened for "stop"; nothing was said.
    assert {e.outcome for e in events if isinstance(e, TurnEnded)
            and e.turn_id != turn.turn_id} == {"no_speech"}
    [ended] = [e for e in events if isinstance(e, TimerEnded)]
    assert ended.reason == "limit"
    alarms = [(state, in_turn) for what, state, in_turn in sink.played if what == "alarm"]
    assert alarms and alarms[0] == (State.IDLE, False), sink.played
    first = [what for what, _, _ in sink.played].index("alarm")
    answer = sink.played[:first]  # the spoken answer, sentence by sentence, then the ring
    assert answer and all(in_turn for _, _, in_turn in answer), sink.played


async def test_the_wake_word_stops_a_ringing_timer(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    wav = tmp_path / "wake.wav"
    write_wav(wav, np.concatenate([silence(2.5), speech(tts, "Hey Jarvis."), silence(7.0)]),
              RATE_HZ)
    loop, sink, events = timer_loop(llama_server, tts, stt, wav, 60.0, tmp_path)
    loop.assistant.timers.add(1.0)
    await loop.run()
    await loop.bus.drain()
    order = [type(e) for e in events
             if isinstance(e, TimerRinging | TimerEnded | WakewordDetected)]
    assert order == [TimerRinging, WakewordDetected, TimerEnded]
    [ended] = [e for e in events if isinstance(e, TimerEnded)]
    assert ended.reason == "wake word"
    assert [what for what, _, _ in sink.played][:1] == ["alarm"]


async def test_a_timer_set_by_a_question_that_went_on_is_cancelled(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    """"Set a timer for five minutes." ended in a pause, then the speaker went on: the voice
    loop cancels that turn with the reason ``CONTINUED``, and the timer it set goes too (the
    whole question sets its own). Any other cancellation (a barge-in) keeps it."""
    said = flite("Set a timer for five minutes.", "slt")
    for reason, kept in ((CONTINUED, False), (None, True)):
        wav = tmp_path / "silence.wav"
        write_wav(wav, silence(0.1), RATE_HZ)
        loop, sink, events = timer_loop(llama_server, tts, stt, wav, 30.0, tmp_path)
        utterance = Utterance("t1", said, SpeechEnded(audio_ms=2000, duration_ms=1800,
                                                      reason="silence", turn_id="t1"))
        task = asyncio.create_task(loop._turn(utterance, None))
        for _ in range(300):  # the skill sets it, then the answer plays in real time
            if sink.played:
                break
            await asyncio.sleep(0.05)
        [timer] = loop.assistant.timers.all()
        await cancel_and_wait(task, msg=reason)
        assert bool(loop.assistant.timers.all()) is kept
        ended = [e for e in events if isinstance(e, TimerEnded)]
        assert [e.reason for e in ended] == ([] if kept else ["continued"])
        for left in loop.assistant.timers.all():
            loop.assistant.timers.cancel(left.timer_id)
        await loop.assistant.timers.close()
