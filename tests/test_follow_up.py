"""Follow-up questions without the wake word (``session.follow_up_s``), on the real models
and a real llama.cpp server, in real time (the window opens when the answer has been played)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from heisenberg.audio.format import RATE_HZ, write_wav
from heisenberg.audio.sinks import NullSink
from heisenberg.audio.sources import FileSource
from heisenberg.core.bus import EventBus
from heisenberg.core.config import Config, LLMConfig
from heisenberg.core.events import (
    EventType,
    FollowUpStarted,
    LLMComplete,
    TranscriptionFinal,
    TurnEnded,
    WakewordDetected,
)
from heisenberg.llm.stream import LlamaCppLLM
from heisenberg.orchestrator import voice
from heisenberg.orchestrator.assistant import Assistant, TurnOutcome
from heisenberg.orchestrator.voice import VoiceLoop
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.wakeword import OpenWakeWordEngine
from tests.conftest import RunningServer, flite, silence, speech
from tests.test_voice_real import record

pytestmark = pytest.mark.usefixtures("close_llms")


def follow_up_loop(server: RunningServer, tts: PiperTTS, stt: WhisperSTT, wav: Path,
                   window_s: float) -> tuple[VoiceLoop, list]:
    base = Config(llm=LLMConfig(url=server.url, max_tokens=24, temperature=0.0))
    config = dataclasses.replace(base, session=dataclasses.replace(base.session,
                                                                   follow_up_s=window_s))
    bus = EventBus()
    events = record(bus)
    loop = VoiceLoop(Assistant(config, bus, LlamaCppLLM(config.llm, server.url)),
                     FileSource(wav, realtime=True), NullSink(),
                     OpenWakeWordEngine(config.wakeword), stt, tts,
                     follow_up_s=config.session.follow_up_s)
    return loop, events


def two_questions(tts: PiperTTS, wav: Path, gap_s: float) -> Path:
    """"Hey Jarvis, what is the capital of France?", ``gap_s`` of silence, then "And what
    about Germany?" without the wake word."""
    write_wav(wav, np.concatenate([
        silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
        flite("What is the capital of France?", "rms"), silence(gap_s),
        flite("And what about Germany?", "rms")]), RATE_HZ)
    return wav


async def test_a_follow_up_is_a_new_question_without_the_wake_word(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    wav = two_questions(tts, tmp_path / "follow_up.wav", 8.0)
    loop, events = follow_up_loop(llama_server, tts, stt, wav, 10.0)
    first, second = await loop.run(max_turns=2)
    await loop.bus.drain()
    assert "france" in first.transcript.lower() and "germany" in second.transcript.lower()
    assert second.outcome is not None and second.outcome.answer
    assert len([e for e in events if isinstance(e, WakewordDetected)]) == 1
    [opened] = [e for e in events if isinstance(e, FollowUpStarted)][:1]
    assert opened.turn_id == second.turn_id and opened.window_s == 10.0
    # In order: the first answer ended, then the window opened, then the new question.
    order = [(type(e), e.turn_id) for e in events
             if isinstance(e, TurnEnded | FollowUpStarted | TranscriptionFinal)]
    assert order[:4] == [(TranscriptionFinal, first.turn_id), (TurnEnded, first.turn_id),
                         (FollowUpStarted, second.turn_id),
                         (TranscriptionFinal, second.turn_id)]
    states = [(e.old, e.new, e.reason) for e in events if e.type is EventType.STATE_CHANGED]
    assert ("idle", "listening", "follow-up") in states
    # The same conversation: the second question went to the LLM with the first in history.
    rows = loop.assistant.session.get_conversation_history()
    assert [r.user for r in rows] == [first.transcript, second.transcript]
    [_, second_llm] = [e for e in events if isinstance(e, LLMComplete)]
    assert "france" in second_llm.server_prompt.lower()


async def test_silence_after_the_answer_goes_back_to_idle(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    wav = tmp_path / "no_follow_up.wav"
    write_wav(wav, np.concatenate([
        silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
        flite("What is the capital of France?", "rms"), silence(9.0)]), RATE_HZ)
    loop, events = follow_up_loop(llama_server, tts, stt, wav, 3.0)
    [turn] = await loop.run()
    await loop.bus.drain()
    [opened] = [e for e in events if isinstance(e, FollowUpStarted)]
    ended = [e.outcome for e in events if isinstance(e, TurnEnded)]
    assert ended == ["answered", "no_speech"]
    assert [e.turn_id for e in events if isinstance(e, TurnEnded)][1] == opened.turn_id
    states = [(e.old, e.new, e.reason) for e in events if e.type is EventType.STATE_CHANGED]
    assert states[-2:] == [("idle", "listening", "follow-up"), ("listening", "idle",
                                                                 "no speech")]
    assert len([e for e in events if isinstance(e, LLMComplete)]) == 1
    assert turn.outcome is not None and turn.outcome.answer


async def test_no_window_when_it_is_off(llama_server: RunningServer, tts: PiperTTS,
                                        stt: WhisperSTT, tmp_path: Path) -> None:
    wav = two_questions(tts, tmp_path / "off.wav", 4.0)
    loop, events = follow_up_loop(llama_server, tts, stt, wav, 0.0)
    [turn] = await loop.run()
    await loop.bus.drain()
    assert not [e for e in events if isinstance(e, FollowUpStarted)]
    assert "france" in turn.transcript.lower()


async def test_a_typed_question_closes_the_pending_window(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A typed question that takes the state between the spoken answer and the window
    (which waits for the answer's echo to die away: 2 s here, so that the typed question
    surely comes first) closes the window: none opens after the typed answer either."""
    monkeypatch.setattr(voice, "FOLLOW_UP_ECHO_S", 2.0)
    wav = tmp_path / "typed.wav"
    write_wav(wav, np.concatenate([
        silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
        flite("What is the capital of France?", "rms"), silence(10.0)]), RATE_HZ)
    loop, events = follow_up_loop(llama_server, tts, stt, wav, 5.0)
    typed: list[asyncio.Task[TurnOutcome]] = []

    async def on_event(event: object) -> None:
        if isinstance(event, TurnEnded) and event.outcome == "answered" and not typed:
            typed.append(asyncio.create_task(loop.assistant.ask("What is two plus two?")))

    loop.bus.subscribe(on_event, name="typist")
    [turn] = await loop.run()
    await loop.bus.drain()
    [asked] = typed
    outcome = await asked
    assert outcome.answer
    assert not [e for e in events if isinstance(e, FollowUpStarted)]
    assert [e.outcome for e in events if isinstance(e, TurnEnded)] == ["answered", "answered"]
    assert turn.outcome is not None and turn.outcome.answer
