"""The hearing front end on real speech, with the real wake word model and VAD: synchronous,
in audio time, no sleeps and no event loop."""

from __future__ import annotations

import numpy as np
import pytest

from heisenberg.audio.format import RATE_HZ, AudioChunk, chunks_of
from heisenberg.core.config import STTConfig, WakeWordConfig
from heisenberg.core.events import SpeechStarted, TurnEnded, WakewordDetected
from heisenberg.orchestrator.hearing import Heard, Hearing, Pause, Resumed, Utterance
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.vad import Endpointer, SileroVad, WebRtcVad
from heisenberg.voice.wakeword import OpenWakeWordEngine
from tests.conftest import silence, speech

CHUNK_MS = 80


def hearing(early_stt_s: float = 0.15, end_silence_ms: int = 650) -> Hearing:
    cfg = STTConfig(end_silence_ms=end_silence_ms)
    return Hearing(OpenWakeWordEngine(WakeWordConfig()), WebRtcVad(cfg.vad_aggressiveness),
                   Endpointer(cfg.end_silence_ms / 1000, cfg.max_utterance_s,
                              cfg.no_speech_timeout_s),
                   preroll_chunks=cfg.preroll_ms // CHUNK_MS, early_stt_s=early_stt_s,
                   speaking_threshold=0.7, wake_word="jarvis")


def hear(h: Hearing, audio: np.ndarray, **kwargs: object) -> list[tuple[int, Heard]]:
    """Everything heard, with the audio time (ms from the start) of the chunk that gave it."""
    out = []
    for i, chunk in enumerate(chunks_of(audio)):
        out += [((i + 1) * CHUNK_MS, item) for item in h.feed(chunk, **kwargs)]  # type: ignore[arg-type]
    return out


@pytest.fixture(scope="module")
def question(tts: PiperTTS) -> tuple[np.ndarray, int]:
    """'Hey Jarvis.', a short pause, a question, then silence; and where the question ends."""
    head = np.concatenate([silence(0.5), speech(tts, "Hey Jarvis."), silence(0.3),
                           speech(tts, "What is the capital of France?")])
    return np.concatenate([head, silence(2.0)]), len(head) * 1000 // RATE_HZ


def test_a_question_is_heard_from_the_wake_word_to_the_end_of_speech(
        question: tuple[np.ndarray, int]) -> None:
    audio, question_end_ms = question
    h = hearing(early_stt_s=0.0)
    heard = hear(h, audio)
    kinds = [type(item) for _, item in heard]
    assert kinds == [WakewordDetected, SpeechStarted, Utterance], heard
    (woke_at, wake), (_, started), (ended_at, utterance) = heard
    assert isinstance(wake, WakewordDetected) and wake.model == "hey_jarvis"
    assert isinstance(started, SpeechStarted)
    assert isinstance(utterance, Utterance)
    assert {item.turn_id for _, item in heard} == {wake.turn_id}
    # The end is decided end_silence_ms (650) after the last word, in audio time.
    assert question_end_ms + 400 <= ended_at <= question_end_ms + 650 + 3 * CHUNK_MS
    # The utterance keeps a pre-roll before the first speech after the wake word (not the
    # end of the phrase before the pause), and all of the question.
    assert utterance.ended.duration_ms == len(utterance.samples) * 1000 // RATE_HZ
    preroll_ms = STTConfig().preroll_ms // CHUNK_MS * CHUNK_MS
    assert preroll_ms >= 160
    speech_at = woke_at + started.audio_ms  # when the start was decided: after the onset
    assert ended_at - speech_at + preroll_ms <= utterance.ended.duration_ms
    assert utterance.ended.duration_ms < ended_at - woke_at
    assert h.listening_to == ""  # the wake word engine hears again


def test_a_pause_long_enough_gives_an_early_cue_and_speech_takes_it_back(
        tts: PiperTTS) -> None:
    audio = np.concatenate([silence(0.5), speech(tts, "Hey Jarvis."), silence(0.3),
                            speech(tts, "What is the capital"), silence(0.45),
                            speech(tts, "of France?"), silence(1.5)])
    heard = [item for _, item in hear(hearing(early_stt_s=0.15, end_silence_ms=900), audio)]
    kinds = [type(item).__name__ for item in heard]
    assert kinds[:2] == ["WakewordDetected", "SpeechStarted"]
    assert kinds[-1] == "Utterance"
    pauses = [i for i, k in enumerate(kinds) if k == "Pause"]
    assert pauses and kinds.index("Resumed") > pauses[0]  # the mid-question pause
    last_pause = heard[pauses[-1]]
    assert isinstance(last_pause, Pause)
    assert "Resumed" not in kinds[pauses[-1]:]  # the last pause is the end of the question
    utterance = heard[-1]
    assert isinstance(utterance, Utterance)
    # The early audio is the utterance up to the pause: the same speech.
    assert len(last_pause.samples) <= len(utterance.samples)
    assert np.array_equal(last_pause.samples, utterance.samples[:len(last_pause.samples)])
    assert all(isinstance(item, Pause | Resumed | Utterance | SpeechStarted | WakewordDetected)
               for item in heard)


class Noted(SileroVad):
    """Silero, noting what it said of every chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.quiet_at: list[tuple[int, float]] = []

    def is_speech(self, chunk: AudioChunk) -> bool:
        speech = super().is_speech(chunk)
        self.quiet_at.append((chunk.timestamp_ms + chunk.duration_ms, self.quiet_s))
        return speech


@pytest.mark.parametrize("ending", ["of France?", "of Spain?", "of Italy?", "of Peru?"])
def test_the_early_transcript_starts_at_the_quiet_frames_not_at_a_quiet_chunk(
        tts: PiperTTS, ending: str) -> None:
    """Silero's 32 ms frames: a chunk whose speech ended in its first frame is speech, but
    the pause is counted from that frame; whisper starts as soon as early_stt_s of it."""
    cfg = STTConfig()
    vad = Noted()
    h = Hearing(OpenWakeWordEngine(WakeWordConfig()), vad,
                Endpointer(cfg.end_silence_ms / 1000, cfg.max_utterance_s,
                           cfg.no_speech_timeout_s),
                preroll_chunks=cfg.preroll_ms // CHUNK_MS, early_stt_s=0.06,
                speaking_threshold=0.7, wake_word="jarvis")
    audio = np.concatenate([silence(0.5), speech(tts, "Hey Jarvis."), silence(0.3),
                            speech(tts, f"What is the capital {ending}"), silence(1.0)])
    heard = hear(h, audio)
    pause = next(i for i, (_, item) in enumerate(heard) if isinstance(item, Pause))
    listening = next(i for i, (_, item) in enumerate(heard) if isinstance(item, SpeechStarted))
    first_quiet = next(at for at, quiet_s in vad.quiet_at
                       if at > heard[listening][0] and quiet_s >= 0.06 - 1e-6)
    assert heard[pause][0] == first_quiet


def test_the_wake_word_then_silence_ends_at_the_no_speech_timeout(tts: PiperTTS) -> None:
    audio = np.concatenate([silence(0.5), speech(tts, "Hey Jarvis."), silence(7.0)])
    heard = hear(hearing(), audio)
    (woke_ms, wake), (ended_ms, ended) = heard
    assert isinstance(wake, WakewordDetected)
    assert isinstance(ended, TurnEnded) and ended.outcome == "no_speech"
    assert ended.turn_id == wake.turn_id
    # 5 s of audio after the pre-roll (no_speech_timeout_s), however fast it was fed.
    assert 4500 <= ended_ms - woke_ms <= 5500


def test_its_own_voice_saying_the_wake_word_is_not_a_wake_word(
        question: tuple[np.ndarray, int]) -> None:
    audio, _ = question
    assert hear(hearing(), audio, playing=True, echo="I am Jarvis, hey Jarvis.") == []
    # The same audio while the speaker plays something else is a barge-in.
    heard = hear(hearing(), audio, playing=True, echo="The capital is Paris.")
    assert isinstance(heard[0][1], WakewordDetected)


def test_stopping_mid_question_ends_the_turn(question: tuple[np.ndarray, int]) -> None:
    audio, question_end_ms = question
    h = hearing()
    heard = hear(h, audio[: question_end_ms * RATE_HZ // 1000 - RATE_HZ // 2])
    [wake] = [item for _, item in heard if isinstance(item, WakewordDetected)]
    interrupted, ended = h.stop("input ended")
    assert (interrupted.turn_id, ended.turn_id) == (wake.turn_id, wake.turn_id)
    assert isinstance(ended, TurnEnded) and ended.outcome == "interrupted"
    assert h.stop("again") == []
