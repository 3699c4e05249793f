"""Open speakers on the real-time room rig (bench/room.py): a private PulseAudio where the
assistant's speaker is heard by its microphone 40 ms later through a room's impulse
response, and the user speaks into the same room. The daemon's own wiring
(``Runtime.echo_canceller`` + ``Runtime.voice_loop``) with the real models."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from heisenberg.audio.format import RATE_HZ, AudioChunk, resample
from heisenberg.audio.sinks import SpeakerSink
from heisenberg.audio.sources import MicrophoneSource
from heisenberg.core.config import Config
from heisenberg.core.events import (
    Event,
    FollowUpStarted,
    StateChanged,
    TranscriptionFinal,
    TurnEnded,
    VoiceInterrupt,
    WakewordDetected,
)
from heisenberg.core.states import State
from heisenberg.core.tasks import cancel_and_wait
from heisenberg.main import Runtime, VoiceEngines
from heisenberg.orchestrator.voice import VoiceLoop
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.wakeword import OpenWakeWordEngine
from tests.conftest import RunningServer, config_for, flite, reinit_portaudio, speech

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from room import (  # the bench's own room
    PULSE_LOG,
    PulseRoom,
    echo_gain,
    impulse_response,
    pulse_rig,
)

ANSWER = ("Once upon a time, in a land far away, there lived a mighty dragon who guarded a "
          "mountain of gold and slept for a hundred years, and nobody in the valley below "
          "ever dared to climb the mountain and wake him up.")
ROOM_GAIN = 0.25


@pytest.fixture
def room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[PulseRoom,
                                                                            np.ndarray]]:
    ir = impulse_response(np.random.default_rng(7))
    with pulse_rig(tmp_path, ir, 40.0) as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        reinit_portaudio()
        yield PulseRoom(env, tmp_path / PULSE_LOG), ir
    reinit_portaudio()


async def calibrate(room: PulseRoom) -> None:
    """Set the echo path to ``ROOM_GAIN``: the rig's own gain, measured on white noise."""
    room.set_gain(1.0)
    speaker, mic = SpeakerSink("hz_speaker", RATE_HZ), MicrophoneSource("hz_mic")
    heard: list[np.ndarray] = []

    async def listen() -> None:
        async for chunk in mic.chunks():
            heard.append(chunk.array())

    reader = asyncio.create_task(listen())
    try:
        await asyncio.sleep(0.5)
        noise = (np.random.default_rng(0).standard_normal(2 * RATE_HZ) * 2000).astype(np.int16)
        before = len(heard)
        await speaker.play(AudioChunk(noise.tobytes(), RATE_HZ))
        await asyncio.sleep(0.3)
    finally:
        await cancel_and_wait(reader, 5.0)
        await speaker.close()
    got = np.concatenate(heard[before:]).astype(np.float64)
    loudest = max(np.sqrt(np.mean(got[i:i + RATE_HZ] ** 2))
                  for i in range(0, len(got) - RATE_HZ, RATE_HZ // 4))
    room.set_gain(ROOM_GAIN / (loudest / 2000))


def rig_config(url: str, **session: object) -> Config:
    """The daemon's config on the rig: its speaker and microphone, echo cancellation on,
    no earcons, and ``session`` settings."""
    base = config_for(url)
    return dataclasses.replace(
        base, audio=dataclasses.replace(base.audio, echo_cancel="speex", earcons=False,
                                        input_device="hz_mic", output_device="hz_speaker"),
        session=dataclasses.replace(base.session, **session))  # type: ignore[arg-type]


def recorded(rt: Runtime) -> list[Event]:
    """Every event of the runtime's bus, in order, from now on."""
    events: list[Event] = []

    async def note(event: Event) -> None:
        events.append(event)

    rt.bus.subscribe(note, name="test")
    return events


class TimedMic(MicrophoneSource):
    """The daemon's microphone, remembering the newest chunk it gave: its audio time and
    when it was captured, so that a test knows how far behind the room the hearing is."""

    newest: tuple[int, float] = (0, 0.0)

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        async for chunk in super().chunks():
            if chunk.captured_at is not None:
                self.newest = (chunk.timestamp_ms, chunk.captured_at)
            yield chunk


async def hearing_caught_up(loop: VoiceLoop, wall_s: float, limit_s: float = 20.0) -> None:
    """Wait until the hearing has been fed the room's sound up to ``time.monotonic()``
    ``wall_s``: on a busy machine it runs seconds behind the room."""
    mic = loop.source
    assert isinstance(mic, TimedMic)
    async with asyncio.timeout(limit_s):
        while mic.newest[1] < wall_s:
            await asyncio.sleep(0.02)
        target_ms = mic.newest[0]
        while loop.hearing.fed_ms < target_ms:
            await asyncio.sleep(0.02)


async def rig_loop(rt: Runtime, stt: WhisperSTT, tts: PiperTTS
                   ) -> tuple[SpeakerSink, SpeakerSink, VoiceLoop, asyncio.Task[object]]:
    """The daemon's voice loop on the rig, running and listening: its speaker, the user's
    mouth (already open: PortAudio's first stream takes a while), the loop and its task."""
    speaker = SpeakerSink("hz_speaker", tts.rate_hz)
    user = SpeakerSink("hz_room", RATE_HZ)
    await user.play(AudioChunk(np.zeros(RATE_HZ // 5, np.int16).tobytes(), RATE_HZ))
    loop = rt.voice_loop(VoiceEngines(OpenWakeWordEngine(rt.config.wakeword), stt, tts),
                         TimedMic("hz_mic"), speaker)
    running: asyncio.Task[object] = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(30):
            await loop.listening.wait()
    except BaseException:
        await cancel_and_wait(running, 10.0)
        await user.close()
        raise
    return speaker, user, loop, running


async def test_the_wake_word_is_heard_over_its_own_equally_loud_voice(
        room: tuple[PulseRoom, np.ndarray], llama_server: RunningServer, tts: PiperTTS,
        stt: WhisperSTT, caplog: pytest.LogCaptureFixture) -> None:
    """The assistant speaks two long answers on an open speaker; a few seconds into the
    second the user says "Hey Jarvis" as loud as the answer is at the microphone. With the
    daemon's echo canceller the wake word is heard; the assistant's own voice never woke
    it."""
    caplog.set_level(logging.INFO)
    rig, ir = room
    await calibrate(rig)
    base = config_for(llama_server.url)
    config = dataclasses.replace(base, audio=dataclasses.replace(
        base.audio, echo_cancel="speex", earcons=False, input_device="hz_mic",
        output_device="hz_speaker"))
    events: list[tuple[float, Event]] = []
    async with Runtime(config, resume=False) as rt:
        async def note(event: Event) -> None:
            events.append((time.monotonic(), event))

        rt.bus.subscribe(note, name="test")
        speaker, user, loop, running = await rig_loop(rt, stt, tts)
        canceller = loop.hearing.canceller
        try:
            assert canceller is not None and speaker.reference is canceller.reference
            answer = tts.synthesize(ANSWER)
            # The wake phrase in the voice the wake word hears best (the one the answer is
            # in, too): this test is about the echo, bench/barge_in.py about the voices.
            said = speech(tts, "Hey Jarvis.")
            answer16 = resample(answer.array(), answer.rate_hz, RATE_HZ)
            scale = ROOM_GAIN / echo_gain(answer16, said, ir, 0.0, clip=False)
            said = np.clip(said * scale, -32768, 32767).astype(np.int16)
            # The first answer after start: the canceller meets the room (finds the delay,
            # adapts), as a daemon's does once; the user speaks over the second.
            await speaker.play_text(answer, ANSWER)
            playing = asyncio.create_task(speaker.play_text(answer, ANSWER))
            await asyncio.sleep(3.0)
            user_at = time.monotonic()
            await user.play(AudioChunk(said.tobytes(), RATE_HZ))
            deadline = time.monotonic() + 20
            while not any(isinstance(e, WakewordDetected) for _, e in events):
                assert time.monotonic() < deadline, (
                    canceller.stats, speaker.underflows,
                    [r.getMessage() for r in caplog.records if "echo" in r.getMessage()
                     or "rejected" in r.getMessage()])
                await asyncio.sleep(0.1)
            await cancel_and_wait(playing, 5.0)
        finally:
            await cancel_and_wait(running, 10.0)
            await user.close()
    woke = [at for at, e in events if isinstance(e, WakewordDetected)]
    assert woke and min(woke) > user_at, (woke, user_at)
    assert canceller.stats.active_chunks > 0 and canceller.stats.delay_updates >= 1


async def test_speaking_over_the_answer_stops_it_without_the_wake_word(
        room: tuple[PulseRoom, np.ndarray], llama_server: RunningServer, tts: PiperTTS,
        stt: WhisperSTT, caplog: pytest.LogCaptureFixture) -> None:
    """With ``session.interrupt_speech_ms``, the user asks a question (no wake word, a flite
    voice) as loud as the answer at the microphone, a few seconds into the second answer:
    the answer stops, the state says why, and the question is transcribed and goes to the
    LLM; the first answer, while the canceller met the room, went on to its end."""
    caplog.set_level(logging.INFO)
    rig, ir = room
    await calibrate(rig)
    config = rig_config(llama_server.url, interrupt_speech_ms=96)
    answer = tts.synthesize(ANSWER)
    said = flite("What time is it in Tokyo?", "rms")
    answer16 = resample(answer.array(), answer.rate_hz, RATE_HZ)
    scale = ROOM_GAIN / echo_gain(answer16, said, ir, 0.0, clip=False)
    said = np.clip(said * scale, -32768, 32767).astype(np.int16)
    for attempt in range(2):
        # Now and then the rig's loopback runs dry (PulseAudio logs it: PulseRoom.skips),
        # and the echo path stays ~20-50 ms later, which no room does: until the filter has
        # learnt the new path it leaves the whole echo, which the gate takes for a user (a
        # known limit, docs/VOICE.md). An answer that interrupted itself over such a skip is
        # played again with a new daemon; without a skip, or twice, the test fails.
        stack = contextlib.AsyncExitStack()  # the daemon, its loop and the user's mouth
        try:
            rt = await stack.enter_async_context(Runtime(config, resume=False))
            events = recorded(rt)
            speaker, user, loop, running = await rig_loop(rt, stt, tts)
            stack.push_async_callback(user.close)
            stack.push_async_callback(cancel_and_wait, running, 10.0)
            skips = rig.skips()
            await speaker.play_text(answer, ANSWER)  # the canceller meets the room
            if not [e for e in events if isinstance(e, VoiceInterrupt)]:
                break
            assert attempt == 0 and rig.skips() > skips, \
                f"its own voice interrupted it (rig skips: {skips} -> {rig.skips()})"
        except BaseException:
            await stack.aclose()
            raise
        await stack.aclose()
        logging.getLogger(__name__).warning("its own voice interrupted it over a skip of "
                                            "the rig's echo path: played again")
    async with stack:
        began = speaker.played_ms
        playing = asyncio.create_task(speaker.play_text(answer, ANSWER))
        await asyncio.sleep(2.5)
        # The voice is heard only behind a settled canceller, and bench/interrupt.py
        # missed 0-8 % of interruptions in its last runs: this test is about the stop, so
        # the user waits (up to 1.5 s) for a settled canceller and, not heard, says it once
        # more, as people do.
        canceller = loop.hearing.canceller
        assert canceller is not None
        settle_by = time.monotonic() + 1.5
        while not canceller.settled and time.monotonic() < settle_by:
            await asyncio.sleep(0.05)
        await user.play(AudioChunk(said.tobytes(), RATE_HZ))
        # Said again only once the first has been heard to its end and judged: the hearing
        # may run seconds behind the room, and the phrase said over a late decision made one
        # question of the two ("What is it?", once in CI).
        await hearing_caught_up(loop, time.monotonic() + 1.0)
        if not [e for e in events if isinstance(e, VoiceInterrupt)]:
            await user.play(AudioChunk(said.tobytes(), RATE_HZ))
        async with asyncio.timeout(15):
            await playing  # cut short: it returns long before the answer's end

        def why() -> tuple[object, ...]:
            return ([str(e.type) for e in events], loop.hearing.canceller,
                    [r.getMessage() for r in caplog.records
                     if "echo" in r.getMessage() or "interrupt" in r.getMessage()])

        played_s = (speaker.played_ms - began) / 1000
        assert played_s < answer.duration_ms / 1000 - 3.0, (played_s, why())
        interrupts = [e for e in events if isinstance(e, VoiceInterrupt)]
        assert len(interrupts) == 1, why()
        deadline = time.monotonic() + 90  # the question is transcribed and answered
        while not any(isinstance(e, TurnEnded) and e.turn_id == interrupts[0].turn_id
                      for e in events):
            assert time.monotonic() < deadline, why()
            await asyncio.sleep(0.1)
    [interrupt] = [e for e in events if isinstance(e, VoiceInterrupt)]
    [ended] = [e for e in events if isinstance(e, TurnEnded) and e.turn_id == interrupt.turn_id]
    assert ended.outcome == "answered", ended
    moved = [e for e in events if isinstance(e, StateChanged) and e.reason ==
             "voice interruption"]
    assert moved and moved[0].new is State.LISTENING and moved[0].turn_id == interrupt.turn_id
    [question] = [e for e in events if isinstance(e, TranscriptionFinal)]
    assert question.turn_id == interrupt.turn_id and "time" in question.text.lower(), question
    assert len(loop.interrupt_ms) == 1 and loop.interrupt_ms[0] > 0


async def test_its_own_echo_never_starts_a_follow_up(
        room: tuple[PulseRoom, np.ndarray], llama_server: RunningServer, tts: PiperTTS,
        stt: WhisperSTT) -> None:
    """A whole voice turn on the rig with ``session.follow_up_s``: the user (a flite voice)
    asks after the wake word, the answer is spoken on the open speaker, then the follow-up
    window opens and, with nobody speaking, ends with no speech: the answer's echo in the
    room was not taken for a question."""
    rig, ir = room
    await calibrate(rig)
    config = rig_config(llama_server.url, follow_up_s=3.0)
    async with Runtime(config, resume=False) as rt:
        events = recorded(rt)
        speaker, user, loop, running = await rig_loop(rt, stt, tts)
        try:
            said = np.concatenate([speech(tts, "Hey Jarvis."), np.zeros(RATE_HZ // 4, np.int16),
                                   flite("What is the capital of France?", "slt")])
            await user.play(AudioChunk(said.astype(np.int16).tobytes(), RATE_HZ))
            deadline = time.monotonic() + 90
            while not any(isinstance(e, FollowUpStarted) for e in events) or not any(
                    isinstance(e, TurnEnded) and e.turn_id == next(
                        f.turn_id for f in events if isinstance(f, FollowUpStarted))
                    for e in events):
                assert time.monotonic() < deadline, [str(e.type) for e in events]
                await asyncio.sleep(0.1)
        finally:
            await cancel_and_wait(running, 10.0)
            await user.close()
    answered = [e for e in events if isinstance(e, TurnEnded) and e.outcome == "answered"]
    assert len(answered) == 1, [str(e.type) for e in events]
    assert loop.turns[0].outcome is not None and loop.turns[0].outcome.spoken
    [opened] = [e for e in events if isinstance(e, FollowUpStarted)]
    ended = [e for e in events if isinstance(e, TurnEnded) and e.turn_id == opened.turn_id]
    assert [e.outcome for e in ended] == ["no_speech"], ended
    assert len([e for e in events if isinstance(e, TranscriptionFinal)]) == 1
