"""The voice loop on the real models (openWakeWord, faster-whisper tiny.en, Piper joe-medium)
and the real llama.cpp server, fed through the same source/sink interfaces as the devices."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from heisenberg.audio.format import RATE_HZ, AudioChunk, chunks_of, read_wav, write_wav
from heisenberg.audio.sinks import NullSink, WavFileSink
from heisenberg.audio.sources import AudioDeviceError, AudioSource, FileSource
from heisenberg.core.bus import EventBus
from heisenberg.core.config import Config, LLMConfig, STTConfig, TTSConfig, WakeWordConfig
from heisenberg.core.events import (
    ErrorEvent,
    Event,
    EventType,
    LLMComplete,
    LLMToken,
    SpeechEnded,
    TTSStarted,
    TurnEnded,
    VoiceInterrupt,
)
from heisenberg.core.states import State
from heisenberg.llm.stream import LlamaCppLLM
from heisenberg.orchestrator import voice as voice_module
from heisenberg.orchestrator.assistant import Assistant
from heisenberg.orchestrator.hearing import Pause
from heisenberg.orchestrator.speech import Speaker
from heisenberg.orchestrator.voice import NO_ANSWER, SORRY, EarlyAnswer, VoiceLoop, is_dismissal
from heisenberg.voice.stt import WhisperSTT, default_model_path, is_meaningful
from heisenberg.voice.tts import PiperTTS, TextToSpeech
from heisenberg.voice.vad import WebRtcVad
from heisenberg.voice.wakeword import (
    Detection,
    ModelError,
    OpenWakeWordEngine,
    VadGatedWakeWord,
    WakeWordEngine,
)
from tests.conftest import RunningServer, flite, silence, speech

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from speech_sets import opensfx  # the benchmarks' own data loader

from tests.test_llm_faults import fake_llm, open_sse, sse

OTHER_SPEECH = (
    "Good morning everyone. Today we will talk about the weather in the mountains and the "
    "rivers that run through the valleys. Hey Java developers, please open your laptops. "
    "The harvest was late this year because the rain did not stop for three weeks. "
    "My friend Travis drove to the market and bought apples, pears and a bag of carrots. "
    "Have you seen the new library downtown? It has a garden on the roof and a small cafe. "
    "Hey there, can you pass me the salt? Thank you very much. "
    "The train to the coast leaves at nine and arrives a little after noon. "
    "Children were playing football in the park while their parents talked about work. "
    "Harvey said that the jars in the kitchen should be washed before the party. "
    "Scientists measured the temperature of the lake every morning for a whole year. "
    "In the evening we read a book about sailors who crossed the ocean in a tiny boat. "
    "Hey, hello, how are you doing today? I am doing fine, thanks for asking. "
    "The museum opens at ten and closes at six, except on Mondays when it is closed. "
    "Please remember to water the plants and feed the cat before you leave the house. "
    "Jars of honey and jam were lined up on the shelf next to the window. "
    "The orchestra played a long symphony and the audience stood up to applaud. "
)

pytestmark = pytest.mark.usefixtures("close_llms")


def record(bus: EventBus) -> list[Event]:
    events: list[Event] = []

    async def handler(event: Event) -> None:
        events.append(event)

    bus.subscribe(handler, name="recorder", max_queue=100000)
    return events


def detections(engine: OpenWakeWordEngine, samples: np.ndarray) -> int:
    return sum(d is not None and d.confirmed for d in map(engine.process, chunks_of(samples)))


# "Hey, Jarvis." (a pause after "hey") after 1 s of silence is the hardest of these for the
# model; the verifier must confirm it (bench/wakeword.py measures the trade-off).
@pytest.mark.parametrize(("said", "after_s"), [("Hey Jarvis.", 0.5), ("Hey, Jarvis.", 1.0)])
def test_wake_word_hears_hey_jarvis(tts: PiperTTS, wake: OpenWakeWordEngine, said: str,
                                    after_s: float) -> None:
    audio = np.concatenate([silence(after_s), speech(tts, said), silence(1.0)])
    found = [d for d in (wake.process(c) for c in chunks_of(audio)) if d is not None]
    confirmed = [d for d in found if d.confirmed]
    assert len(confirmed) == 1
    verifier = wake.verifiers["hey_jarvis"]
    assert verifier is not None and confirmed[0].model == "hey_jarvis"
    assert confirmed[0].verdict is not None and confirmed[0].verdict >= verifier.threshold


def test_wake_word_from_a_custom_tflite_file(tts: PiperTTS, tmp_path: Path) -> None:
    import pyopen_wakeword

    bundled = Path(pyopen_wakeword.__file__).parent / "models" / "hey_jarvis.tflite"
    custom = tmp_path / "my_assistant.tflite"
    shutil.copy(bundled, custom)
    engine = OpenWakeWordEngine(WakeWordConfig(model=str(custom)))
    audio = np.concatenate([silence(0.5), speech(tts, "Hey Jarvis."), silence(1.0)])
    found = [d for d in (engine.process(c) for c in chunks_of(audio)) if d is not None]
    assert [d.model for d in found] == ["my_assistant"]
    engine.close()
    # TensorFlow Lite crashes the process on these (segfault): the daemon must not.
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match="not a valid Flatbuffer"):
        OpenWakeWordEngine(WakeWordConfig(model=str(broken)))
    other_kind = bundled.parent / "melspectrogram.tflite"  # a valid model, not a wake word's
    with pytest.raises(ModelError, match="not a usable openWakeWord .tflite model"):
        OpenWakeWordEngine(WakeWordConfig(model=str(other_kind)))


@pytest.fixture(scope="module")
def other_speech(tts: PiperTTS) -> np.ndarray:
    audio = speech(tts, OTHER_SPEECH)
    assert len(audio) / RATE_HZ >= 60
    return audio


def test_sixty_seconds_of_other_speech_do_not_wake_it(other_speech: np.ndarray,
                                                      wake: OpenWakeWordEngine) -> None:
    assert detections(wake, other_speech) == 0


def gated(engine: OpenWakeWordEngine) -> VadGatedWakeWord:
    return VadGatedWakeWord(engine, WebRtcVad(2).any_speech)


def test_vad_gate_sleeps_in_silence_and_still_hears_the_wake_word(
        tts: PiperTTS, wake: OpenWakeWordEngine, other_speech: np.ndarray) -> None:
    engine = gated(wake)
    audio = np.concatenate([silence(10.0), speech(tts, "Hey Jarvis."), silence(5.0)])
    chunks = chunks_of(audio)
    found = [d for d in (engine.process(c) for c in chunks) if d is not None and d.confirmed]
    assert len(found) == 1 and found[0].model == "hey_jarvis"
    # The models ran around the speech only: not during 10 s + 5 s of silence.
    assert engine.chunks_processed < len(chunks) // 3
    assert detections(gated(OpenWakeWordEngine(WakeWordConfig())), other_speech) == 0


def test_stt_transcribes_speech_and_drops_silence(tts: PiperTTS, stt: WhisperSTT) -> None:
    text = stt.transcribe(speech(tts, "What is the capital of France?"))
    assert "capital of france" in text.lower()
    assert stt.transcribe(silence(2.0)) == ""
    assert not is_meaningful(" [BLANK_AUDIO]") and not is_meaningful("Thank you.")


class Recorder:
    """A TTS and a hold (``Assistant.hold_llm``) that log what happens, in order."""

    def __init__(self, tts: PiperTTS) -> None:
        self.tts = tts
        self.rate_hz = tts.rate_hz
        self.log: list[str] = []

    def synthesize(self, text: str) -> AudioChunk:
        self.log.append(f"synthesize {text}")
        return self.tts.synthesize(text)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self.log.append("hold")
        yield
        self.log.append("release")


async def test_speech_starts_before_the_answer_is_complete(tts: PiperTTS) -> None:
    sink = NullSink()
    said: list[Event] = []
    recorder = Recorder(tts)
    speaker = Speaker(recorder, sink, said.append, turn_id="t", hold=recorder.hold)
    for token in ["The", " capital", " of", " France", " is", " Paris.", " It"]:
        speaker.feed(token)
    await asyncio.sleep(0.2)
    assert said == [] and sink.played_ms == 0  # nothing runs before start()
    speaker.start()
    async with asyncio.timeout(10):
        while not said:
            await asyncio.sleep(0.01)
    # The first sentence is already playing while the "LLM" has more to say.
    [started] = said
    assert isinstance(started, TTSStarted) and started.text == "The capital of France is Paris."
    assert started.turn_id == "t"
    speaker.feed(" is big.")
    await speaker.finish()
    assert speaker.spoken_text() == "The capital of France is Paris. It is big."
    assert [e.type for e in said] == [EventType.TTS_STARTED, EventType.TTS_FINISHED]
    # Only the first piece is synthesized with the server held.
    assert recorder.log == ["hold", "synthesize The capital of France is Paris.", "release",
                            "synthesize It is big."]


def voice_setup(server: RunningServer, tts: PiperTTS, stt: WhisperSTT, source: AudioSource,
                sink: WavFileSink | NullSink, config: Config | None = None,
                **llm: object) -> tuple[VoiceLoop, list[Event]]:
    base = LLMConfig(url=server.url, max_tokens=40, temperature=0.0)
    config = dataclasses.replace(config or Config(),
                                 llm=dataclasses.replace(base, **llm))  # type: ignore[arg-type]
    bus = EventBus()
    events = record(bus)
    assistant = Assistant(config, bus, LlamaCppLLM(config.llm, server.url))
    loop = VoiceLoop(assistant, source, sink, gated(OpenWakeWordEngine(config.wakeword)), stt,
                     tts)
    return loop, events


async def test_spoken_question_to_spoken_answer(llama_server: RunningServer, tts: PiperTTS,
                                                stt: WhisperSTT, tmp_path: Path) -> None:
    question = tmp_path / "question.wav"
    write_wav(question, np.concatenate([silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
                                        speech(tts, "What is the capital of France?")]),
              RATE_HZ)
    reply = tmp_path / "reply.wav"
    sink = WavFileSink(reply, tts.rate_hz)
    loop, events = voice_setup(llama_server, tts, stt, FileSource(question), sink)
    turns = await loop.run()
    await sink.close()
    await loop.bus.drain()
    [turn] = turns
    assert "capital of france" in turn.transcript.lower()
    assert turn.outcome is not None and turn.outcome.error is None and turn.outcome.answer
    # The hearing transcribed at the pause (to judge the end of turn): at the end of speech
    # the transcript is there already, then comes the first token.
    assert 0 <= turn.timings.seconds("transcript") < turn.timings.seconds("first_token")
    assert turn.timings.seconds("first_audio") > 0
    assert len(read_wav(reply)) > RATE_HZ // 2  # more than earcons: a spoken answer
    kinds = [e.type for e in events]
    for kind in (EventType.WAKEWORD_DETECTED, EventType.SPEECH_STARTED, EventType.SPEECH_ENDED,
                 EventType.TRANSCRIPTION_FINAL, EventType.LLM_TOKEN, EventType.LLM_COMPLETE,
                 EventType.TTS_STARTED, EventType.TTS_FINISHED):
        assert kind in kinds, kind
    states = [(e.old, e.new) for e in events if e.type is EventType.STATE_CHANGED]
    assert states == [("idle", "listening"), ("listening", "thinking"),
                      ("thinking", "speaking"), ("speaking", "idle")]
    [saved] = loop.assistant.session.get_conversation_history()
    assert saved.user == turn.transcript and saved.assistant == turn.outcome.answer


async def test_wake_word_then_silence_goes_back_to_idle_without_the_llm(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    wav = tmp_path / "wake_only.wav"
    write_wav(wav, np.concatenate([speech(tts, "Hey Jarvis."), silence(6.0)]), RATE_HZ)
    loop, events = voice_setup(llama_server, tts, stt, FileSource(wav, tail_silence_s=0),
                               NullSink())
    assert await loop.run() == []
    await loop.bus.drain()
    kinds = [e.type for e in events]
    assert EventType.WAKEWORD_DETECTED in kinds
    assert EventType.TRANSCRIPTION_FINAL not in kinds and EventType.LLM_TOKEN not in kinds
    states = [(e.old, e.new, e.reason) for e in events if e.type is EventType.STATE_CHANGED]
    assert states == [("idle", "listening", "wake word"), ("listening", "idle", "no speech")]


async def test_barge_in_while_speaking(llama_server: RunningServer, tts: PiperTTS,
                                       stt: WhisperSTT, tmp_path: Path) -> None:
    wav = tmp_path / "barge_in.wav"
    write_wav(wav, np.concatenate([
        speech(tts, "Hey Jarvis."), silence(0.2),
        speech(tts, "Tell me a long story about a dragon."), silence(6.0),
        # Barge in, then say nothing: the assistant listens, hears no speech, goes idle.
        speech(tts, "Hey Jarvis."), silence(4.0)]), RATE_HZ)
    sink = WavFileSink(tmp_path / "reply.wav", tts.rate_hz, realtime=True)
    # The gemma chat format makes the bundled model tell a long story: 400 tokens take
    # ~20 s to generate here, so the stream is still running when the user barges in.
    loop, events = voice_setup(llama_server, tts, stt, FileSource(wav, realtime=True), sink,
                               prompt_format="gemma", max_tokens=400, temperature=0.7)
    turns = await asyncio.wait_for(loop.run(), 120)
    await loop.bus.drain()
    first = turns[0]
    assert first.interrupted and "dragon" in first.transcript.lower()
    kinds = [e.type for e in events]
    assert EventType.INTERRUPTED in kinds
    # The LLM stream stops with the barge-in: nothing of it completes after the second wake
    # word. (Sometimes the model ends its story before the user barges in: it completed
    # before, while the answer still played, which the rest of the test still covers.)
    barge = [i for i, e in enumerate(events) if e.type is EventType.WAKEWORD_DETECTED][1]
    completed = [i for i, e in enumerate(events) if e.type is EventType.LLM_COMPLETE
                 and e.turn_id == first.turn_id]
    assert all(i < barge for i in completed), (completed, barge)
    states = [(e.old, e.new) for e in events if e.type is EventType.STATE_CHANGED]
    assert ("speaking", "listening") in states
    assert states[-1] == ("listening", "idle")
    history = loop.assistant.session.get_conversation_history()
    assert history[0].interrupted and history[0].assistant  # what was actually said
    spoken_words = len(history[0].assistant.split())
    answer_tokens = [e for e in events if e.type is EventType.LLM_TOKEN
                     and e.turn_id == first.turn_id]
    assert spoken_words < len("".join(e.text for e in answer_tokens).split())
    assert len(loop.barge_in_ms) == 1  # its wall-clock figure is bench/barge_in.py's
    await sink.close()


async def test_a_knock_over_the_answer_holds_it_once_and_it_goes_on(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    """Voice interruptions on, with headphones (no echo to cancel): a knock (a recorded
    one, OpenSFX) every second while the answer plays holds it at the first knock, for
    ``interrupt_hold_ms``, as silence where it was; no voice follows, so it goes on and
    is said to its end, not interrupted; the knocks after that hold it no more."""
    knock = opensfx()[21].astype(np.float64)  # 86 ms
    knock = (knock * 3000 / np.sqrt(np.mean(knock ** 2))).astype(np.int16)
    beat = np.concatenate([knock, silence(1.0 - len(knock) / RATE_HZ)])
    wav = tmp_path / "knocks.wav"
    write_wav(wav, np.concatenate([
        silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
        speech(tts, "Tell me about the moon."), silence(3.0), *[beat] * 14]), RATE_HZ)
    base = Config()
    config = dataclasses.replace(
        base, audio=dataclasses.replace(base.audio, echo_cancel="headphones", earcons=False),
        session=dataclasses.replace(base.session, interrupt_speech_ms=96))
    class Spy(WavFileSink):
        """Where the answer was in the reply when it was held and released."""

        def __init__(self) -> None:
            super().__init__(tmp_path / "reply.wav", tts.rate_hz, realtime=True)
            self.calls: list[tuple[str, int]] = []

        def hold(self) -> None:
            self.calls.append(("hold", len(self.samples())))
            super().hold()

        def release(self) -> None:
            self.calls.append(("release", len(self.samples())))
            super().release()

    sink = Spy()
    loop, events = voice_setup(llama_server, tts, stt, FileSource(wav, realtime=True), sink,
                               config=config, max_tokens=60)
    turns = await asyncio.wait_for(loop.run(), 120)
    await loop.bus.drain()
    [turn] = turns
    assert turn.outcome is not None and turn.outcome.answer and not turn.interrupted
    assert not [e for e in events if e.type is EventType.VOICE_INTERRUPT]
    # Held once (the knocks after it in the same answer hold nothing), inside the answer,
    # and released: the answer went on after it.
    # (The wake word releases whatever may be held, before anything is.)
    kinds = [kind for kind, _ in sink.calls]
    assert "hold" in kinds and kinds[kinds.index("hold"):] == ["hold", "release"], sink.calls
    assert loop.hearing.holds == loop.hearing.releases == 1
    (_, held_at), (_, released_at) = sink.calls[kinds.index("hold"):]
    reply = sink.samples()
    assert 0 < held_at < released_at < len(reply)
    # What the hold added is silence (a paced sink writes what the speaker would sound:
    # 20 ms steps); everything else in the reply is the answer, played in full.
    added = len(reply) - round(sink.played_ms * tts.rate_hz / 1000)
    step = tts.rate_hz // 50
    assert added >= step, added
    zero = np.concatenate([[0], reply[held_at:released_at + step] == 0, [0]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(zero))
    assert max(edges[1::2] - edges[::2]) >= added  # one stretch, where it was held
    await sink.close()


class DyingMicrophone(AudioSource):
    """Fault injection: a microphone that delivers a little audio, then is unplugged."""

    name = "mic:dying"

    def __init__(self) -> None:
        self.opened = 0

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        self.opened += 1
        if self.opened > 2:
            return
        for chunk in chunks_of(silence(0.4)):
            yield chunk
        raise AudioDeviceError("microphone unplugged (device disappeared)")


async def test_a_dying_microphone_is_reported_and_reopened(llama_server: RunningServer,
                                                           tts: PiperTTS,
                                                           stt: WhisperSTT) -> None:
    mic = DyingMicrophone()
    loop, events = voice_setup(llama_server, tts, stt, mic, NullSink())
    await asyncio.wait_for(loop.run(), 20)
    await loop.bus.drain()
    errors = [e for e in events if e.type is EventType.ERROR]
    assert mic.opened == 3 and len(errors) == 2
    assert all("microphone unplugged" in e.message for e in errors)


@pytest.mark.parametrize(("factory", "words"), [
    (lambda: OpenWakeWordEngine(WakeWordConfig(model="/no/such/model.tflite")),
     "neither a built-in model"),
    (lambda: WhisperSTT(STTConfig(model_path="/no/such/whisper")), "no model.bin"),
    (lambda: PiperTTS(TTSConfig(voice_path="/no/such/voice.onnx")), "needs the .onnx voice"),
])
def test_missing_models_give_clear_errors(factory: object, words: str) -> None:
    with pytest.raises(ModelError, match=words):
        factory()  # type: ignore[operator]


def test_whisper_size_from_the_local_hugging_face_cache(tmp_path: Path, tts: PiperTTS,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # A Hugging Face cache holding tiny.en, laid out as a past download would have left it.
    repo = tmp_path / "hub" / "models--Systran--faster-whisper-tiny.en"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for file in default_model_path().iterdir():
        (snapshot / file.name).symlink_to(file)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    stt = WhisperSTT(STTConfig(model="tiny.en"))
    assert "capital of france" in stt.transcribe(speech(tts, "What is the capital of France?")
                                                 ).lower()
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        WhisperSTT(STTConfig(model="base.en"))
    with pytest.raises(ModelError, match="'huge' is not a whisper size"):
        WhisperSTT(STTConfig(model="huge"))


class FailsOnce(TextToSpeech):
    """Fault injection: the real Piper voice, but the first answer's synthesis raises."""

    def __init__(self, real: PiperTTS) -> None:
        self.real = real
        self.rate_hz = real.rate_hz
        self.failed = False
        self.spoken: list[str] = []

    def synthesize(self, text: str) -> AudioChunk:
        if not self.failed and text != SORRY:
            self.failed = True
            raise RuntimeError("piper exploded")
        self.spoken.append(text)
        return self.real.synthesize(text)


class WakeFailsOnce(WakeWordEngine):
    """Fault injection: the real wake word engine, raising on the 5th chunk."""

    def __init__(self, real: WakeWordEngine) -> None:
        self.real = real
        self.name = getattr(real, "name", "")
        self.calls = 0

    def process(self, chunk: AudioChunk, threshold: float | None = None) -> Detection | None:
        self.calls += 1
        if self.calls == 5:
            raise ValueError("tflite tensor mismatch")
        return self.real.process(chunk, threshold)


async def test_engine_failures_become_errors_and_the_loop_goes_on(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT,
        wake: OpenWakeWordEngine, tmp_path: Path) -> None:
    wav = tmp_path / "two.wav"
    question = np.concatenate([speech(tts, "Hey Jarvis."), silence(0.3),
                               speech(tts, "What is the capital of France?"), silence(3.0)])
    write_wav(wav, np.concatenate([silence(1.0), question, question]), RATE_HZ)
    config = Config(llm=LLMConfig(url=llama_server.url, max_tokens=16, temperature=0.0))
    bus = EventBus()
    events = record(bus)
    failing = FailsOnce(tts)
    out = tmp_path / "reply.wav"
    sink = WavFileSink(out, tts.rate_hz)
    loop = VoiceLoop(Assistant(config, bus, LlamaCppLLM(config.llm, llama_server.url)),
                     FileSource(wav, realtime=True), sink, WakeFailsOnce(wake), stt, failing,
                     earcons=False)
    turns = await loop.run()
    await sink.close()
    await bus.drain()
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert [e.code for e in errors] == ["internal", "internal"]
    assert "tflite tensor mismatch" in errors[0].message
    assert "piper exploded" in errors[1].message
    first, second = turns
    assert first.outcome is not None and first.outcome.error is not None
    assert second.outcome is not None and second.outcome.error is None and second.outcome.answer
    assert failing.spoken[0] == SORRY  # the failed turn was apologised for, out loud
    assert loop.state is State.IDLE
    assert len(read_wav(out)) > 0


async def slots_busy(server: RunningServer) -> bool:
    async with aiohttp.ClientSession() as session, session.get(server.url + "/slots") as resp:
        return any(slot.get("is_processing") for slot in await resp.json())


def early_setup(server: RunningServer, tts: PiperTTS, stt: WhisperSTT, wav: Path,
                end_silence_ms: int) -> tuple[VoiceLoop, list[Event]]:
    """A voice loop in real time whose end-of-speech silence leaves whisper (~0.5 s here)
    time to finish within it, so that the early answer starts before the decision."""
    base = Config(llm=LLMConfig(url=server.url, max_tokens=40, temperature=0.0))
    config = dataclasses.replace(base, stt=dataclasses.replace(
        base.stt, end_silence_ms=end_silence_ms, early_start_ms=300))
    bus = EventBus()
    events = record(bus)
    loop = VoiceLoop(Assistant(config, bus, LlamaCppLLM(config.llm, server.url)),
                     FileSource(wav, realtime=True), NullSink(),
                     gated(OpenWakeWordEngine(config.wakeword)), stt, tts,
                     early_stt_s=0.3, early_answer=True)
    return loop, events


async def test_early_answer_is_used_when_the_speaker_is_done(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    wav = tmp_path / "q.wav"
    write_wav(wav, np.concatenate([silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
                                   speech(tts, "What is the capital of France?")]), RATE_HZ)
    synthesized: list[str] = []
    real_synthesize = tts.synthesize

    def counted(text: str) -> AudioChunk:
        synthesized.append(text)
        return real_synthesize(text)

    monkeypatch.setattr(tts, "synthesize", counted)
    loop, events = early_setup(llama_server, tts, stt, wav, end_silence_ms=1200)
    [turn] = await loop.run()
    await loop.bus.drain()
    assert turn.early_answer and loop.prefetches == 1
    # The first sentence was synthesized by the early answer, before the end of speech, and
    # the turn played that audio: no sentence was synthesized twice.
    assert synthesized and len(synthesized) == len(set(synthesized)), synthesized
    started = [e for e in events if isinstance(e, TTSStarted)]
    assert started and started[0].text == synthesized[0]
    assert turn.outcome is not None and turn.outcome.error is None and turn.outcome.answer
    # The answer streamed into the turn is the one the early request produced, whole.
    complete = [e for e in events if isinstance(e, LLMComplete)]
    assert [c.text.strip() for c in complete] == [turn.outcome.answer]
    tokens = "".join(e.text for e in events if isinstance(e, LLMToken))
    assert tokens.strip() == turn.outcome.answer
    assert not await slots_busy(llama_server)


async def test_early_answer_is_dropped_when_the_speaker_goes_on(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    wav = tmp_path / "q.wav"
    # A long pause mid-question: whisper and the LLM start on "What is the capital", then the
    # speaker goes on. (End of speech needs 1.5 s of silence here, so the pause is not one.)
    write_wav(wav, np.concatenate([silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
                                   speech(tts, "What is the capital"), silence(1.2),
                                   speech(tts, "of France?")]), RATE_HZ)
    loop, events = early_setup(llama_server, tts, stt, wav, end_silence_ms=1500)
    [turn] = await loop.run()
    await loop.bus.drain()
    # One for the whole question; the one started on "What is the capital" (if whisper was
    # done before speech resumed: on a busy machine it may not be) was dropped.
    assert loop.prefetches in (1, 2)
    said = turn.transcript.lower()
    assert "capital" in said and "france" in said and turn.early_answer
    assert turn.outcome is not None and turn.outcome.error is None
    [saved] = loop.assistant.session.get_conversation_history()
    assert saved.user == turn.transcript
    # Only the kept answer reached the bus; the dropped request freed the server's slot.
    assert [e.turn_id for e in events if isinstance(e, LLMComplete)] == [turn.turn_id]
    assert not await slots_busy(llama_server)


async def test_an_early_answer_goes_on_through_a_noise_that_adds_no_words(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    """A clank right after the question resumes "speech" for the VAD; the next pause has
    the same words, so the answer started at the first pause is taken up again (not a
    second request), and the question ends at that second pause."""
    from tests.test_endpointing import clank

    wav = tmp_path / "q.wav"
    write_wav(wav, np.concatenate([silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
                                   flite("What is the tallest mountain in Europe?", "slt"),
                                   silence(0.1), clank(), silence(2.0)]), RATE_HZ)
    config = Config(llm=LLMConfig(url=llama_server.url, max_tokens=30, temperature=0.0))
    bus = EventBus()
    events = record(bus)
    loop = VoiceLoop(Assistant(config, bus, LlamaCppLLM(config.llm, llama_server.url)),
                     FileSource(wav, realtime=True), NullSink(),
                     gated(OpenWakeWordEngine(config.wakeword)), stt, tts, earcons=False,
                     early_stt_s=config.stt.early_start_ms / 1000)
    started: list[str | None] = []
    start_early = loop._early_answer

    async def counted(pause: Pause) -> EarlyAnswer:
        started.append(pause.text)
        return await start_early(pause)

    loop._early_answer = counted  # type: ignore[method-assign]
    [turn] = await loop.run()
    await bus.drain()
    assert "mountain" in turn.transcript.lower()
    assert len(started) == 1, started  # not again at the second pause
    assert turn.early_answer and loop.prefetches == 1
    assert turn.outcome is not None and turn.outcome.error is None and turn.outcome.answer
    assert [e.turn_id for e in events if isinstance(e, LLMComplete)] == [turn.turn_id]
    assert len([e for e in events if isinstance(e, SpeechEnded)]) == 1
    assert not await slots_busy(llama_server)


@pytest.mark.parametrize(("pieces", "first"), [
    (["The", " answer", " is", " Paris", ".", "\n"], "The answer is Paris."),
    # An answer without an end mark is synthesized as it ends, before the turn asks.
    (["Paris"], "Paris"),
])
async def test_the_early_answer_synthesizes_its_first_piece(
        tts: PiperTTS, pieces: list[str], first: str) -> None:
    from heisenberg.orchestrator.prefetch import Prefetch
    from tests.test_llm_faults import PROMPT

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        resp = await open_sse(request)
        for piece in pieces:
            await resp.write(sse({"content": piece, "stop": False}))
        await resp.write(end_of_stream(body["prompt"], len(pieces)))
        return resp

    recorder = Recorder(tts)
    async with fake_llm(answer) as llm:
        prefetch = Prefetch(llm, PROMPT, "What is the capital of France?", None, recorder,
                            hold=recorder.hold)
        prefetch.start()
        await asyncio.wait_for(prefetch.settled.wait(), 30.0)
        # The first piece is synthesized with the server held (``server.pause_for_first_audio``)
        assert recorder.log == ["hold", f"synthesize {first}", "release"]
        assert prefetch.first_sentence == first and prefetch.first_audio is not None
        assert prefetch.first_audio.done()
        assert (await prefetch.first_audio).pcm == tts.synthesize(first).pcm
        assert prefetch.ready_audio(first) is prefetch.first_audio
        said = "".join([item async for item in prefetch.items() if isinstance(item, str)])
        assert said == "".join(pieces)


def end_of_stream(prompt: str, tokens: int) -> bytes:
    """llama-server's last SSE message of a completion."""
    return sse({"content": "", "stop": True, "tokens_predicted": tokens,
                "tokens_evaluated": 20, "stop_type": "eos", "prompt": prompt})


def slow_model(prompts: list[str], pieces: list[str]
               ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Fault injection: a model that needs 2 s before its first token (a busy machine);
    the prompts it was given go to ``prompts``."""

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompts.append(body["prompt"])
        resp = await open_sse(request)
        await asyncio.sleep(2.0)
        for piece in pieces:
            await resp.write(sse({"content": piece, "stop": False}))
        await resp.write(end_of_stream(body["prompt"], len(pieces)))
        return resp

    return answer


async def test_the_end_waits_for_the_early_answer_and_a_speaker_who_goes_on_is_heard(
        tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    prompts: list[str] = []

    wav = tmp_path / "q.wav"
    # A finished sentence, half a second of silence, and more: the end-of-turn rule reads
    # the first part as complete, and 300 ms of silence would end it.
    write_wav(wav, np.concatenate([silence(0.5), speech(tts, "Hey Jarvis."), silence(0.3),
                                   flite("What is the capital of France?", "slt"),
                                   silence(0.5), flite("And the capital of Spain?", "slt"),
                                   silence(2.5)]), RATE_HZ)
    wake = gated(OpenWakeWordEngine(WakeWordConfig()))
    heard: dict[int, tuple[str, list[Event]]] = {}
    for wait_ms in (1500, 0):
        prompts.clear()
        # Speech just after the end would continue the question: off, to see the wait alone.
        config = Config(stt=dataclasses.replace(STTConfig(), end_silence_ms=300,
                                                ready_wait_ms=wait_ms, resume_window_ms=0))
        bus = EventBus()
        events = record(bus)
        async with fake_llm(slow_model(prompts, ["Madrid", " and", " Paris."])) as llm:
            loop = VoiceLoop(Assistant(config, bus, llm), FileSource(wav), NullSink(), wake,
                             stt, tts, earcons=False, early_stt_s=0.06)
            turns = await loop.run()
            await bus.drain()
        assert turns and turns[0].outcome is not None and turns[0].outcome.error is None
        heard[wait_ms] = (turns[0].transcript.lower(), events)
        if wait_ms:  # an early answer to the first part (if the file, read as fast as it
            # goes, left time to start one) was dropped; the one for the whole was kept
            assert loop.prefetches == len(prompts) and len(prompts) in (1, 2)
            assert "spain" in prompts[-1].lower()
            if len(prompts) == 2:
                assert "france" in prompts[0].lower() and "spain" not in prompts[0].lower()
            assert len(turns) == 1
    waited, events = heard[1500]
    assert "france" in waited and "spain" in waited, waited
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    first_tts = next(i for i, e in enumerate(events) if isinstance(e, TTSStarted))
    assert len(ended) == 1 and events.index(ended[0]) < first_tts  # nothing played before
    # The same audio without the wait: the first part alone is the question.
    cut, _ = heard[0]
    assert "france" in cut and "spain" not in cut, cut


async def test_a_speaker_who_goes_on_after_the_end_is_heard_as_one_question(
        tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    """Default config. The first sentence is finished and the end is decided in the pause;
    the speaker goes on within ``stt.resume_window_ms``: the first turn stops (kept as
    ``continued``, out of the prompt) and the next one answers the whole question."""
    prompts: list[str] = []
    wav = tmp_path / "q.wav"
    write_wav(wav, np.concatenate([silence(0.5), speech(tts, "Hey Jarvis."), silence(0.3),
                                   flite("What is the capital of France?", "slt"),
                                   silence(1.2), flite("And the capital of Spain?", "slt"),
                                   silence(2.5)]), RATE_HZ)
    bus = EventBus()
    events = record(bus)
    # The slow model: nothing plays in the window (while an answer plays, only a settled
    # echo canceller lets the speaker go on).
    async with fake_llm(slow_model(prompts, ["Paris", " and", " Madrid."])) as llm:
        assistant = Assistant(Config(), bus, llm)
        loop = VoiceLoop(assistant, FileSource(wav), NullSink(),
                         gated(OpenWakeWordEngine(WakeWordConfig())), stt, tts, earcons=False,
                         early_stt_s=0.06)
        turns = await loop.run()
        await bus.drain()
    assert len(turns) == 2, turns
    first, second = turns
    assert first.interrupted and first.outcome is None
    assert second.outcome is not None and second.outcome.error is None
    said = second.transcript.lower()
    assert "france" in said and "spain" in said, said
    [went_on] = [e for e in events if isinstance(e, VoiceInterrupt)]
    assert went_on.continues == first.turn_id and went_on.turn_id == second.turn_id
    # The first half was asked (early or at its end), then the whole question.
    assert "spain" not in prompts[0].lower() and "spain" in prompts[-1].lower()
    history = assistant.session.get_conversation_history()
    # "continued" when it was cancelled while answering (nothing kept if still transcribing)
    assert [t.outcome for t in history] in (["continued", "answered"], ["answered"]), history
    in_prompt = assistant.session.prompt_history()
    assert len(in_prompt) == 1 and "spain" in in_prompt[0].user.lower(), in_prompt
    assert not any(isinstance(e, TTSStarted) and e.turn_id == first.turn_id for e in events)


async def test_an_empty_answer_is_not_silence(tts: PiperTTS, stt: WhisperSTT,
                                             wake: OpenWakeWordEngine, tmp_path: Path) -> None:
    async def stops_at_once(request: web.Request) -> web.StreamResponse:
        # Fault injection: what a small model does now and then, an end of stream at once.
        body = await request.json()
        resp = await open_sse(request)
        await resp.write(end_of_stream(body["prompt"], 1))
        return resp

    wav = tmp_path / "q.wav"
    write_wav(wav, np.concatenate([silence(0.5), speech(tts, "Hey Jarvis."), silence(0.3),
                                   speech(tts, "What is the capital of France?"),
                                   silence(2.0)]), RATE_HZ)
    out = tmp_path / "reply.wav"
    sink = WavFileSink(out, tts.rate_hz)
    spoken: list[str] = []

    class Recording(TextToSpeech):
        rate_hz = tts.rate_hz

        def synthesize(self, text: str) -> AudioChunk:
            spoken.append(text)
            return tts.synthesize(text)

    async with fake_llm(stops_at_once) as llm:
        loop = VoiceLoop(Assistant(Config(), EventBus(), llm), FileSource(wav), sink, wake, stt,
                         Recording(), earcons=False)
        [turn] = await loop.run()
    await sink.close()
    assert turn.outcome is not None and turn.outcome.error is None
    assert turn.outcome.answer == ""
    assert spoken == [NO_ANSWER]
    assert len(read_wav(out)) > tts.rate_hz // 2  # it was said out loud
    assert loop.state is State.IDLE


async def test_a_long_running_loop_keeps_only_recent_turns_in_memory(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voice_module, "KEEP_TURNS", 1)
    wav = tmp_path / "three.wav"
    question = np.concatenate([speech(tts, "Hey Jarvis."), silence(0.3),
                               speech(tts, "What is two plus two?"), silence(2.0)])
    write_wav(wav, np.concatenate([silence(0.5), *[question] * 3]), RATE_HZ)
    loop, _ = voice_setup(llama_server, tts, stt, FileSource(wav, realtime=True), NullSink(),
                          max_tokens=4)
    turns = await loop.run()
    assert loop._finished_turns() == 3  # every turn counted, though the oldest are forgotten
    assert len(turns) == 1 and turns[0].outcome is not None
    assert len(loop.assistant.session.get_conversation_history()) == 3  # prompt history intact


@pytest.mark.parametrize(("text", "dismissal"), [
    ("Stop.", True), ("Never mind.", True), ("Okay, that's all, thanks.", True),
    ("Cancel please.", True), ("Stop the music.", False), ("Cancel my meeting.", False),
    ("What is the capital of France?", False), ("", False),
    ("Stop. Stop.", True), ("Never mind, never mind.", True), ("Stop, stop the music.", False),
])
def test_what_counts_as_a_dismissal(text: str, dismissal: bool) -> None:
    assert is_dismissal(text) is dismissal


async def test_never_mind_ends_the_turn_without_asking_the_llm(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    wav = tmp_path / "q.wav"
    write_wav(wav, np.concatenate([silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
                                   flite("Never mind.", "slt")]), RATE_HZ)
    loop, events = voice_setup(llama_server, tts, stt, FileSource(wav), NullSink())
    [turn] = await loop.run()
    await loop.bus.drain()
    assert "never mind" in turn.transcript.lower()
    ended = [e for e in events if isinstance(e, TurnEnded)]
    assert [e.outcome for e in ended] == ["dismissed"]
    assert not [e for e in events if isinstance(e, LLMToken | LLMComplete)]
    assert loop.prefetches == 0 and not loop.assistant.session.get_conversation_history()
    assert not await slots_busy(llama_server)


async def test_what_time_is_it_is_answered_by_the_skill_not_the_llm(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path) -> None:
    """Spoken, with an early transcript at the pause: the skill answers, so nothing was
    started early and no token was asked of the model; the answer is spoken and kept."""
    wav = tmp_path / "q.wav"
    write_wav(wav, np.concatenate([silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
                                   flite("What time is it?", "rms"), silence(1.5)]), RATE_HZ)
    loop, events = early_setup(llama_server, tts, stt, wav, end_silence_ms=1200)
    [turn] = await loop.run()
    await loop.bus.drain()
    assert loop.prefetches == 0 and not turn.early_answer
    [complete] = [e for e in events if isinstance(e, LLMComplete)]
    assert complete.stop_reason == "skill:HassGetCurrentTime", (turn.transcript, complete)
    assert turn.outcome is not None and turn.outcome.answer.startswith("It's ")
    assert turn.outcome.spoken
    assert not await slots_busy(llama_server)
