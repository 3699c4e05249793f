"""Interrupting the assistant by speaking over it, without the wake word
(``session.interrupt_speech_ms``), in audio time: a simulated room (bench/room.py) between
what the speaker played and what the microphone hears, the daemon's hearing with its echo
canceller. flite voices, not the tuned Piper one: the answer in "kal", the user in "slt" and
"rms"."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from heisenberg.audio.echo import EchoCanceller, EchoReference
from heisenberg.audio.format import RATE_HZ, AudioChunk, chunks_of
from heisenberg.core.config import Config
from heisenberg.core.events import VoiceInterrupt
from heisenberg.lang import words_in
from heisenberg.orchestrator.hearing import (
    Heard,
    Hold,
    Rejected,
    Release,
    Utterance,
    hearing_for,
)
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.wakeword import OpenWakeWordEngine
from tests.conftest import flite

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from room import echo_gain, impulse_response, simulate  # the benchmarks' own room
from speech_sets import opensfx

ANSWERS = ("Once upon a time, in a land far away, there lived a mighty dragon who guarded a "
           "mountain of gold and slept for a hundred years.",
           "The weather today will be mostly sunny with a light breeze from the west, and "
           "tomorrow clouds will bring some rain in the afternoon.")
T0 = 1000.0
"""The capture clock's time of the first microphone sample (seconds)."""
CONFIG = Config()
INTERRUPT = dataclasses.replace(CONFIG, session=dataclasses.replace(
    CONFIG.session, interrupt_speech_ms=96))


@pytest.fixture(scope="module")
def played() -> tuple[np.ndarray, int]:
    """Two answers a second apart, as the speaker played them; where the second starts.
    The first lets the canceller meet the room (a daemon's does once)."""
    first, second = (flite(text, "kal") for text in ANSWERS)
    gap = np.zeros(RATE_HZ, np.int16)
    return np.concatenate([first, gap, second]), len(first) + len(gap)


def hear(config: Config, wake: OpenWakeWordEngine, played: np.ndarray, mic: np.ndarray,
         echo_cancel: bool = True, second: int = 0) -> list[tuple[int, Heard]]:
    """Everything the hearing heard, with the audio time (ms) of the end of its chunk; the
    answer plays until the end of ``played``; with ``second`` (where it starts) as two
    answers, nothing playing in the second before it."""
    reference = EchoReference(keep_s=60.0)
    reference.played(played, RATE_HZ, T0)
    canceller = EchoCanceller(reference) if echo_cancel else None
    hearing = hearing_for(config, wake, canceller=canceller)
    heard = []
    for chunk in chunks_of(mic):
        live = AudioChunk(chunk.pcm, chunk.rate_hz, chunk.timestamp_ms,
                          captured_at=T0 + chunk.timestamp_ms / 1000)
        at = chunk.timestamp_ms * RATE_HZ // 1000
        playing = at < len(played) and not second - RATE_HZ <= at < second
        end_ms = chunk.timestamp_ms + 80
        heard += [(end_ms, item) for item in hearing.feed(live, playing=playing)]
    return heard


def onset_ms(user: np.ndarray, at: int) -> int:
    """Where the user's voice begins: the first 10 ms within 20 dB of their loudest."""
    frames = user[:len(user) // 160 * 160].astype(np.float64).reshape(-1, 160)
    energy = np.mean(frames ** 2, axis=1)
    return (at + int(np.argmax(energy > 0.01 * energy.max())) * 160) * 1000 // RATE_HZ


@pytest.mark.parametrize(("voice", "level_db", "said"), [
    ("slt", 0.0, "What time is it in Tokyo?"), ("rms", 6.0, "What time is it in Tokyo?"),
    ("kal", 0.0, "Stop talking.")])
def test_speaking_over_the_answer_interrupts_it(
        played: tuple[np.ndarray, int], wake: OpenWakeWordEngine, stt: WhisperSTT,
        voice: str, level_db: float, said: str) -> None:
    """Three seconds into the second answer the user speaks, as loud as the echo or 6 dB
    under it: the hearing interrupts once, soon after their first word, and what they say
    (its first word included, from the pre-roll) is the next utterance: a question, or
    "stop", which the voice loop takes as a dismissal (no LLM turn)."""
    answer, second = played
    ir = impulse_response(np.random.default_rng(5))
    user = flite(said, voice)
    at = second + 3 * RATE_HZ
    gain = 0.25 / echo_gain(answer, user, ir, level_db)  # the room stays; the user's level
    mic = simulate(answer, (user * gain).astype(np.int16), at, ir, 60.0, 0.25)
    heard = hear(INTERRUPT, wake, answer, mic, second=second)
    interrupts = [(end, item) for end, item in heard if isinstance(item, VoiceInterrupt)]
    assert len(interrupts) == 1, interrupts
    decided_ms, event = interrupts[0]
    began_ms = onset_ms(user, at)
    assert began_ms < decided_ms <= began_ms + 300, (began_ms, decided_ms)
    assert abs(event.onset_ms - began_ms) <= 200, (event.onset_ms, began_ms)
    # The answer was held at their first loud sound, before the decision (it stopped there).
    cues = [(end, type(item).__name__) for end, item in heard
            if isinstance(item, Hold | Release | VoiceInterrupt)]
    assert [kind for _, kind in cues[-2:]] == ["Hold", "VoiceInterrupt"], cues
    held_ms = cues[-2][0]
    assert began_ms - 80 <= held_ms < decided_ms, (began_ms, held_ms, decided_ms)
    [question] = [item for _, item in heard if isinstance(item, Utterance)]
    assert question.turn_id == event.turn_id
    text = stt.transcribe(question.samples)
    if said.startswith("Stop"):
        # Its first word came from the pre-roll. The rest, said over the echo's residue, is
        # whisper's to get right: "Stop talking." was heard as "Stop working." with the
        # packages installed on 2026-12-04 (a dismissal only when it is heard right).
        assert text.lower().startswith("stop"), text
    else:
        assert "what time" in text.lower() and "tokyo" in text.lower(), text


def test_its_own_voice_never_interrupts_it(played: tuple[np.ndarray, int],
                                           wake: OpenWakeWordEngine) -> None:
    """Two answers and nobody speaking, in two rooms: the echo, even while the canceller is
    still adapting to the room, is never taken for the user."""
    answer, _ = played
    for seed, delay_ms in ((5, 60.0), (9, 150.0)):
        mic = simulate(answer, np.zeros(0), 0, impulse_response(np.random.default_rng(seed)),
                       delay_ms, 0.35)
        heard = hear(INTERRUPT, wake, answer, mic)
        assert not [item for _, item in heard if isinstance(item, VoiceInterrupt)]


def test_only_the_wake_word_interrupts_by_default_or_without_echo_cancellation(
        played: tuple[np.ndarray, int], wake: OpenWakeWordEngine) -> None:
    answer, second = played
    ir = impulse_response(np.random.default_rng(5))
    user = flite("What time is it in Tokyo?", "slt")
    mic = simulate(answer, user, second + 3 * RATE_HZ, ir, 60.0, 0.25)
    for config, echo_cancel in ((CONFIG, True), (INTERRUPT, False)):
        heard = hear(config, wake, answer, mic, echo_cancel)
        assert not [item for _, item in heard if isinstance(item, VoiceInterrupt)]


def test_with_headphones_the_user_interrupts_without_a_canceller(
        played: tuple[np.ndarray, int], wake: OpenWakeWordEngine, stt: WhisperSTT) -> None:
    """Headphones (``audio.echo_cancel = "headphones"``): the microphone hears the user
    alone while the answer plays, and there is no canceller. Their voice interrupts it
    soon after their first word; with ``echo_cancel = "off"`` (open speakers with no
    canceller) the same audio interrupts nothing, and with headphones nobody speaking
    interrupts nothing either."""
    answer, second = played
    user = flite("What time is it in Tokyo?", "slt")
    at = second + 3 * RATE_HZ
    mic = np.zeros(len(answer), np.int16)
    mic[at:at + len(user)] = user[:len(answer) - at]
    headphones = dataclasses.replace(INTERRUPT, audio=dataclasses.replace(
        INTERRUPT.audio, echo_cancel="headphones"))
    heard = hear(headphones, wake, answer, mic, echo_cancel=False)
    interrupts = [(end, item) for end, item in heard if isinstance(item, VoiceInterrupt)]
    assert len(interrupts) == 1, heard
    decided_ms, event = interrupts[0]
    began_ms = onset_ms(user, at)
    assert began_ms < decided_ms <= began_ms + 300, (began_ms, decided_ms)
    [question] = [item for _, item in heard if isinstance(item, Utterance)]
    assert question.turn_id == event.turn_id
    text = stt.transcribe(question.samples).lower()
    assert "what time" in text and "tokyo" in text, text
    off = dataclasses.replace(INTERRUPT, audio=dataclasses.replace(
        INTERRUPT.audio, echo_cancel="off"))
    assert not [i for _, i in hear(off, wake, answer, mic, echo_cancel=False)
                if isinstance(i, VoiceInterrupt)]
    quiet = np.zeros(len(answer), np.int16)
    assert not hear(headphones, wake, answer, quiet, echo_cancel=False)


def test_a_word_over_as_the_interruption_is_decided_is_still_heard(
        played: tuple[np.ndarray, int], wake: OpenWakeWordEngine, stt: WhisperSTT) -> None:
    """A short "Stop." may end about when the interruption is decided (MBROLA us2's did,
    ~260 ms after its onset, on the rig): the speech is known then, so the question starts
    there and is ended by the silence after it, the word from the pre-roll; it is not
    given up as no speech. Here the word is cut at the chunk the interruption was decided
    on (headphones: no canceller, the same decision as over a cancelled echo)."""
    answer, second = played
    user = flite("Stop.", "slt")
    at = second + 3 * RATE_HZ
    headphones = dataclasses.replace(INTERRUPT, audio=dataclasses.replace(
        INTERRUPT.audio, echo_cancel="headphones"))
    mic = np.zeros(len(answer), np.int16)
    mic[at:at + len(user)] = user
    [(decided_ms, _)] = [(end, i) for end, i in hear(headphones, wake, answer, mic,
                                                      echo_cancel=False)
                         if isinstance(i, VoiceInterrupt)]
    mic[decided_ms * RATE_HZ // 1000:] = 0  # the word is over there
    heard = [item for _, item in hear(headphones, wake, answer, mic, echo_cancel=False)
             if not isinstance(item, Rejected)]  # wake word candidates start nothing
    kinds = [type(item).__name__ for item in heard]
    assert kinds == ["Hold", "VoiceInterrupt", "SpeechStarted", "Pause", "Utterance"], heard
    assert words_in(stt.transcribe(heard[-1].samples))  # type: ignore[union-attr]


def test_a_sound_over_the_answer_holds_it_once_until_it_proves_no_voice(
        played: tuple[np.ndarray, int], wake: OpenWakeWordEngine) -> None:
    """A knock over the answer (a recorded one, OpenSFX) as loud as a user: the answer is
    held at once and released ``interrupt_hold_ms`` later, as no voice followed; a second
    knock in the same answer does not hold it again (a noisy room pauses an answer once,
    not at every sound), and nothing interrupts it. With ``interrupt_hold_ms = 0``
    nothing is held."""
    answer, second = played
    ir = impulse_response(np.random.default_rng(5))
    knock = opensfx()[21].astype(np.float64)  # 86 ms
    gain = 0.25 / echo_gain(answer, knock, ir, 0.0)
    user = np.zeros(2 * RATE_HZ, np.float64)
    user[:len(knock)] = user[RATE_HZ:RATE_HZ + len(knock)] = knock * gain
    at = second + 3 * RATE_HZ
    mic = simulate(answer, np.clip(user, -32768, 32767).astype(np.int16), at, ir, 60.0, 0.25)
    at_ms = at * 1000 // RATE_HZ
    heard = hear(INTERRUPT, wake, answer, mic, second=second)
    cues = [(end, type(item).__name__) for end, item in heard
            if isinstance(item, Hold | Release | VoiceInterrupt) and end > second * 1000 // RATE_HZ]
    assert [kind for _, kind in cues] == ["Hold", "Release"], cues
    (held, _), (released, _) = cues
    assert at_ms <= held <= at_ms + 160, (held, at_ms)
    assert released - held == INTERRUPT.session.interrupt_hold_ms, cues
    no_hold = dataclasses.replace(INTERRUPT, session=dataclasses.replace(
        INTERRUPT.session, interrupt_hold_ms=0))
    assert not [item for _, item in hear(no_hold, wake, answer, mic, second=second)
                if isinstance(item, Hold | Release | VoiceInterrupt)]


def test_after_an_interruption_the_next_answer_can_be_interrupted_from_its_start(
        played: tuple[np.ndarray, int], wake: OpenWakeWordEngine) -> None:
    """The user interrupts the second answer (as loud as its echo) and goes on speaking once
    it has stopped (0.4 s after their onset, as the voice loop and the speaker stop it); a
    third answer follows. Their voice was not the canceller's fault and is not counted
    against it; the filter adapted under it, so when they are done it is rebuilt from the
    echo heard before they spoke, and one good second of the third answer settles it again.
    Before, their voice after the stop made two poor seconds, it unsettled, and the third
    answer had to settle again for two seconds (1.36 s here; a user speaking in them was
    not heard: bench/interrupt.py)."""
    answer, second = played
    ir = impulse_response(np.random.default_rng(5))
    user = flite("What time is it in Tokyo? And how far away is it from here?", "slt")
    at = second + 3 * RATE_HZ
    third = flite(ANSWERS[0], "kal")
    gap = np.zeros(len(user) + 2 * RATE_HZ, np.int16)
    stopped = np.concatenate([answer[:at + int(0.4 * RATE_HZ)], gap])
    speaker = np.concatenate([stopped, third])
    gain = 0.25 / echo_gain(answer, user, ir, 0.0)
    mic = simulate(speaker, (user * gain).astype(np.int16), at, ir, 60.0, 0.25)
    reference = EchoReference(keep_s=60.0)
    reference.played(speaker, RATE_HZ, T0)
    canceller = EchoCanceller(reference)
    hearing = hearing_for(INTERRUPT, wake, canceller=canceller)
    interrupts, settled = [], {}
    for chunk in chunks_of(mic):
        live = AudioChunk(chunk.pcm, chunk.rate_hz, chunk.timestamp_ms,
                          captured_at=T0 + chunk.timestamp_ms / 1000)
        sample = chunk.timestamp_ms * RATE_HZ // 1000
        playing = sample < at + 0.4 * RATE_HZ or len(stopped) <= sample < len(speaker)
        interrupts += [item for item in hearing.feed(live, playing=playing)
                       if isinstance(item, VoiceInterrupt)]
        settled[sample] = canceller.settled
    assert len(interrupts) == 1, interrupts
    assert not hearing.listening_to  # their question ended before the third answer
    # One second of the third answer shows the filter removes its echo: settled from there
    # on (before: 1.36 s here, two good seconds after two poor ones).
    start = len(stopped)
    after_one_s = [ok for s, ok in settled.items()
                   if start + 1.05 * RATE_HZ <= s < start + 3 * RATE_HZ]
    assert after_one_s and all(after_one_s), after_one_s


def test_speech_to_text_hears_the_question_through_the_linear_filter_alone(
        played: tuple[np.ndarray, int], wake: OpenWakeWordEngine) -> None:
    """The question said over the answer (its echo 6 dB louder) goes to speech to text as
    the canceller's linear filter left it, without the residual echo suppressor, whose
    gains cut into the user's voice wherever the answer sounds with it (whisper lost more
    words to that than to the settled filter's faint residue: docs/VOICE.md). The wake
    word, the VAD and the interruption gate still hear the suppressed signal."""
    answer, second = played
    ir = impulse_response(np.random.default_rng(5))
    user = flite("What time is it in Tokyo?", "rms")
    gain = 0.25 / echo_gain(answer, user, ir, 6.0)
    mic = simulate(answer, (user * gain).astype(np.int16), second + 3 * RATE_HZ, ir, 60.0,
                   0.25)
    [question] = [item for _, item in hear(INTERRUPT, wake, answer, mic)
                  if isinstance(item, Utterance)]
    streams = {}
    for name, suppress in (("linear", False), ("suppressed", True)):
        reference = EchoReference(keep_s=60.0)
        reference.played(answer, RATE_HZ, T0)
        canceller = EchoCanceller(reference, suppress=suppress)
        streams[name] = np.concatenate([
            canceller.process(AudioChunk(c.pcm, c.rate_hz, c.timestamp_ms,
                                         captured_at=T0 + c.timestamp_ms / 1000)).array()
            for c in chunks_of(mic)])
    n = len(question.samples)
    # Handed on one 10 ms frame late, in step with the suppressor's output (SpeexEcho).
    linear = np.concatenate([np.zeros(160, np.int16), streams["linear"]])
    starts = [k for k in range(0, len(mic) - n, 1280)
              if np.array_equal(linear[k:k + n], question.samples)]
    assert len(starts) == 1, "the question is not the linear filter's output"
    k = starts[0]
    assert k < second + 3 * RATE_HZ < k + n  # the user's words, with the pre-roll
    assert not np.array_equal(streams["suppressed"][k:k + n], question.samples)


class Thresholds:
    """The real wake word engine, noting the threshold the hearing asks of each chunk."""

    def __init__(self, engine: OpenWakeWordEngine) -> None:
        self.engine = engine
        self.asked: list[float | None] = []

    def process(self, chunk: AudioChunk, threshold: float | None = None) -> object:
        self.asked.append(threshold)
        return self.engine.process(chunk, threshold)

    def __getattr__(self, name: str) -> object:
        return getattr(self.engine, name)


def test_the_wake_word_asks_more_only_until_the_canceller_has_settled(
        played: tuple[np.ndarray, int], wake: OpenWakeWordEngine) -> None:
    """While the answer plays, the wake word's first stage asks 0.7
    (``wakeword.speaking_threshold``) so that its own voice cannot wake it, but only until
    the canceller has settled: then the echo is gone from what it hears (50-60 dB on the
    rig) and the normal stages decide (on a recorded rig run, dev voices, 46 of 48 "Hey
    Jarvis" over the answer heard with 0.7, 48 of 48 without). Without a canceller it
    always asks 0.7 while the answer plays."""
    answer, second = played
    mic = simulate(answer, np.zeros(0), 0, impulse_response(np.random.default_rng(5)), 60.0,
                   0.5)
    for echo_cancel in (True, False):
        reference = EchoReference(keep_s=60.0)
        reference.played(answer, RATE_HZ, T0)
        canceller = EchoCanceller(reference) if echo_cancel else None
        spy = Thresholds(OpenWakeWordEngine(wake.config))
        hearing = hearing_for(CONFIG, spy, canceller=canceller)  # type: ignore[arg-type]
        settled = []
        for chunk in chunks_of(mic[:len(answer)]):
            hearing.feed(AudioChunk(chunk.pcm, chunk.rate_hz, chunk.timestamp_ms,
                                    captured_at=T0 + chunk.timestamp_ms / 1000),
                         playing=True)
            settled.append(canceller is not None and canceller.settled)
        assert len(spy.asked) == len(settled)
        assert [None if s else 0.7 for s in settled] == spy.asked
        assert any(settled) == echo_cancel, settled
