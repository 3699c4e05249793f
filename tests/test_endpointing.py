"""Knowing when the user has finished, on real models: Silero VAD as a stream, the end-of-turn
rule, noise that goes on after the speech, a pause mid-sentence, and the same decision after a
long stream. Voices: flite (the defaults were not tuned on them); noise: OpenTTD's recorded
sound effects (Debian's openttd-opensfx). Audio time only."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from heisenberg.audio.format import RATE_HZ, AudioChunk, chunks_of
from heisenberg.core.config import Config, STTConfig
from heisenberg.core.events import SpeechStarted, VoiceInterrupt, WakewordDetected
from heisenberg.lang import words_in
from heisenberg.orchestrator.hearing import Hearing, Pause, Utterance, hearing_for
from heisenberg.voice.endofturn import unfinished
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.vad import Endpointer, EndpointEvent, SileroVad
from heisenberg.voice.wakeword import OpenWakeWordEngine
from tests.conftest import flite, silence

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from speech_sets import mix, opensfx  # the benchmarks' own data loader

CHUNK_MS = 80


@pytest.fixture(scope="module")
def machines() -> np.ndarray:
    sounds = opensfx()
    assert sounds, "openttd-opensfx is not installed (.ci/install installs it)"
    return np.concatenate(sounds)


def test_silero_as_a_stream_gives_the_model_s_own_probabilities() -> None:
    from faster_whisper.vad import get_vad_model

    audio = np.concatenate([silence(0.3), flite("What is the tallest mountain?", "rms"),
                            silence(0.5)])
    whole = get_vad_model()(audio[:len(audio) // 512 * 512].astype(np.float32) / 32768).ravel()
    vad = SileroVad()
    streamed: list[float] = []
    for size in (1280, 700, 2048, 333):  # chunks that do not line up with its 512 frames
        vad.reset()
        streamed = []
        for i in range(0, len(audio), size):
            streamed += vad.probabilities(AudioChunk(audio[i:i + size].tobytes()))
        assert np.allclose(streamed[:len(whole)], whole, atol=1e-5)
    assert max(streamed) > 0.9 and streamed[-1] < 0.1
    with pytest.raises(ValueError, match="16000 Hz"):
        vad.probabilities(AudioChunk(b"\0\0" * 800, rate_hz=8000))


@pytest.mark.parametrize(("text", "expected"), [
    ("Set a timer for...", True), ("What is the capital of", True), ("Remind me to call-", True),
    ("And so my fellow Americans,", True), ("How many people live in...", True),
    ("What is this?", False), ("Where is this bottle from?", False), ("Tell me more.", False),
    ("Tell me more", True), ("What is in my", True), ("Look at the.", True),
    # A preposition ends a question that begins with a question word, not other sentences.
    ("What is it made of?", False), ("Set an alarm for?", True),
    ("Can you tell me the name of?", True), ("How many people live in?", True),
    # A question word ends a short sentence, not a long one.
    ("Tell me why.", False), ("Tell me a story about a dragon who?", True),
    ("When my friends come over tonight.", True), ("Tell me about the", True),
    ("What time is it?", False), ("How many legs does a spider have?", False),
    ("Turn the lights on.", False), ("When does the shop open?", False),
    ("Ask not what your country can do for you.", False), ("", False),
    ("If it rains, take an umbrella.", False), ("What is the weather like", False),
])
def test_the_end_of_turn_rule(text: str, expected: bool) -> None:
    assert unfinished(text) is expected


def test_an_unfinished_sentence_waits_for_the_longer_pause() -> None:
    ep = Endpointer(end_silence_s=0.4, pause_silence_s=1.6)
    assert ep.process(0.2, True) is EndpointEvent.SPEECH_STARTED
    ep.hold = True
    events = [ep.process(0.08, False) for _ in range(19)]
    assert events == [None] * 19  # 1.52 s of silence
    assert ep.process(0.08, False) is EndpointEvent.SPEECH_ENDED
    ep.reset()
    assert not ep.hold


def test_the_end_waits_for_an_answer_being_prepared_and_no_longer() -> None:
    ep = Endpointer(end_silence_s=0.32, ready_wait_s=0.4)
    assert ep.process(0.24, True) is EndpointEvent.SPEECH_STARTED
    ep.preparing = True
    assert [ep.process(0.08, False) for _ in range(8)] == [None] * 8  # 0.64 s of silence
    ep.preparing = False  # the first audio is ready: the silence heard is enough
    assert ep.process(0.08, False) is EndpointEvent.SPEECH_ENDED
    # Never ready: up to end + wait (0.72 s), then it ends anyway.
    ep.reset()
    assert not ep.preparing
    ep.process(0.24, True)
    ep.preparing = True
    events = [ep.process(0.08, False) for _ in range(9)]
    assert events == [None] * 8 + [EndpointEvent.SPEECH_ENDED]
    # Speech resumes while it waits: the utterance goes on.
    ep.reset()
    ep.process(0.24, True)
    ep.preparing = True
    assert [ep.process(0.08, s) for s in (False,) * 6 + (True,) * 2] == [None] * 8
    assert not ep.done and ep.silence_s == 0.0
    # An unfinished sentence waits for the long pause, preparing or not.
    ep.reset()
    ep.process(0.24, True)
    ep.hold = ep.preparing = True
    assert ep.needed_silence_s == ep.pause_silence_s


def test_silence_credited_over_a_sound_that_added_no_words() -> None:
    ep = Endpointer(end_silence_s=0.32)
    assert ep.process(0.24, True) is EndpointEvent.SPEECH_STARTED
    assert [ep.process(0.08, s) for s in (False, False, True, False)] == [None] * 4
    ep.credit_s = 0.24  # the two silent chunks and the sound: 0.32 s with the last one
    assert ep.silent_for(0.32) is False  # but only 0.08 s after the sound
    assert [ep.process(0.08, False) for _ in range(3)] == [None, EndpointEvent.SPEECH_ENDED,
                                                          None]
    # Speech after it clears the credit: the silence starts again.
    ep.reset()
    ep.process(0.24, True)
    ep.process(0.08, False)
    ep.credit_s = 0.3
    ep.process(0.08, True)
    assert ep.credit_s == 0.0 and ep.silence_s == 0.0
    assert [ep.process(0.08, False) for _ in range(4)] == [None] * 3 + [
        EndpointEvent.SPEECH_ENDED]


def question_hearing(config: Config, stt: WhisperSTT) -> Hearing:
    return hearing_for(config, OpenWakeWordEngine(config.wakeword), transcribe=stt.transcribe)


def listen_from(h: Hearing, audio: np.ndarray, start_ms: int) -> list[tuple[int, object]]:
    """Feed ``audio``; listening starts at ``start_ms`` as after a wake word. Everything
    heard from then, with the audio time at the end of the chunk that gave it."""
    out: list[tuple[int, object]] = []
    for chunk in chunks_of(audio):
        end_ms = chunk.timestamp_ms + CHUNK_MS
        if chunk.timestamp_ms == start_ms:
            h.start(chunk.timestamp_ms)
        heard = h.feed(chunk)
        if h.listening_to or heard:
            out += [(end_ms, item) for item in heard]
    return out


def test_noise_that_goes_on_does_not_keep_the_turn_open(
        stt: WhisperSTT, machines: np.ndarray) -> None:
    said = flite("Which planet is closest to the sun?", "slt")
    noisy = mix(said, machines, 10.0, np.random.default_rng(4), RATE_HZ, 8 * RATE_HZ)
    last_word_ms = 1000 + len(said) * 1000 // RATE_HZ
    for vad, ends in (("silero", True), ("webrtc", False)):
        config = Config(stt=STTConfig(vad=vad, end_of_turn=False))
        heard = listen_from(question_hearing(config, stt), noisy, 960)
        utterances = [(at, u) for at, u in heard if isinstance(u, Utterance)]
        if ends:  # decided within a second of the last word, not at the length limit
            assert len(utterances) == 1, heard
            at, u = utterances[0]
            assert isinstance(u, Utterance) and u.ended.reason == "silence"
            assert last_word_ms < at <= last_word_ms + 1000
            assert "planet" in stt.transcribe(u.samples).lower()
        else:  # webrtcvad calls the machines speech: still listening 8 s later
            assert utterances == [], heard


@pytest.mark.parametrize("question", ["What is this?", "What is it made of?"])
def test_a_question_that_ends_on_this_or_of_ends_at_the_short_pause(
        stt: WhisperSTT, question: str) -> None:
    """"this" and "of" usually begin a phrase, but they end the questions a camera is asked
    most: heard closed by whisper, the end comes after the short silence, not the long
    pause."""
    said = flite(question, "kal")
    audio = np.concatenate([silence(1.0), said, silence(3.0)])
    last_word_ms = 1000 + voiced_end_ms(said)
    heard = listen_from(question_hearing(Config(), stt), audio, 960)
    pauses = [p for _, p in heard if isinstance(p, Pause)]
    utterances = [(at, u) for at, u in heard if isinstance(u, Utterance)]
    assert pauses and pauses[0].text is not None and not pauses[0].unfinished, pauses
    assert len(utterances) == 1, heard
    at, u = utterances[0]
    assert isinstance(u, Utterance) and u.ended.reason == "silence"
    # end_silence_ms (300) and the detector's own lag; the long pause would be 2 s.
    assert at - last_word_ms <= 800, (at, last_word_ms, pauses[0].text)


def voiced_end_ms(audio: np.ndarray) -> int:
    """Where the last sound louder than 1 % of the peak ends, in ms."""
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > np.abs(audio).max() * 0.01)
    return int(loud[-1]) * 1000 // RATE_HZ


def test_a_pause_mid_sentence_does_not_split_the_question(stt: WhisperSTT) -> None:
    head, rest = flite("Set an alarm for", "rms"), flite("seven thirty tomorrow.", "rms")
    audio = np.concatenate([silence(1.0), head, silence(1.2), rest, silence(3.0)])
    rest_end_ms = (len(audio) - 3 * RATE_HZ) * 1000 // RATE_HZ
    heard = listen_from(question_hearing(Config(), stt), audio, 960)
    pauses = [p for _, p in heard if isinstance(p, Pause)]
    utterances = [(at, u) for at, u in heard if isinstance(u, Utterance)]
    assert pauses and pauses[0].text is not None and unfinished(pauses[0].text), pauses
    assert not any(p.repeated for p in pauses)  # the words after the pause are new
    assert len(utterances) == 1, heard
    at, u = utterances[0]
    assert isinstance(u, Utterance) and at > rest_end_ms
    text = stt.transcribe(u.samples).lower()
    assert "alarm" in text and "tomorrow" in text
    # Without the rule the same audio is cut at the pause (the early words only).
    config = Config(stt=STTConfig(end_of_turn=False))
    cut = [u for _, u in listen_from(question_hearing(config, stt), audio, 960)
           if isinstance(u, Utterance)]
    assert cut and "tomorrow" not in stt.transcribe(cut[0].samples).lower()


def test_speech_just_after_the_end_continues_the_question(stt: WhisperSTT) -> None:
    """The first half reads finished ("Describe what you see on my desk."): the end comes
    in the pause. The speaker goes on 1.2 s after their last word, within
    ``stt.resume_window_ms`` of the end: a ``VoiceInterrupt`` that ``continues`` the first
    turn starts a new one, whose utterance is the whole question."""
    head = flite("Describe what you see on my desk,", "rms")
    rest = flite("starting with the objects on the left.", "rms")
    audio = np.concatenate([silence(1.0), head, silence(1.2), rest, silence(3.0)])
    loud = np.flatnonzero(np.abs(rest.astype(np.int32)) > np.abs(rest).max() * 0.01)
    rest_start_ms = (RATE_HZ + len(head) + int(1.2 * RATE_HZ) + loud[0]) * 1000 // RATE_HZ
    heard = listen_from(question_hearing(Config(), stt), audio, 960)
    utterances = [(at, u) for at, u in heard if isinstance(u, Utterance)]
    goes_on = [(at, v) for at, v in heard if isinstance(v, VoiceInterrupt)]
    assert len(utterances) == 2 and len(goes_on) == 1, heard
    (first_at, first), (second_at, second) = utterances
    at, went_on = goes_on[0]
    assert isinstance(first, Utterance) and isinstance(second, Utterance)
    assert first_at < rest_start_ms < at < second_at, heard
    assert at - rest_start_ms <= 300  # the answer stops while the first words are said
    assert went_on.continues == first.turn_id and went_on.turn_id == second.turn_id
    assert "left" not in stt.transcribe(first.samples).lower()
    text = stt.transcribe(second.samples).lower()
    assert "desk" in text and "left" in text, text
    # Off: the rest of the question is lost (it would need the wake word).
    off = listen_from(question_hearing(Config(stt=STTConfig(resume_window_ms=0)), stt),
                      audio, 960)
    assert [type(u) for _, u in off if isinstance(u, Utterance | VoiceInterrupt)] == [
        Utterance], off


def test_with_headphones_a_question_goes_on_over_the_answer(stt: WhisperSTT) -> None:
    """The answer to the first half plays from the end decision on. With headphones
    (``audio.echo_cancel = "headphones"``) the microphone hears only the user, and their
    rest continues the question with no canceller; with ``echo_cancel = "off"`` (open
    speakers, no canceller) nothing can continue over an answer."""
    head = flite("Describe what you see on my desk,", "rms")
    rest = flite("starting with the objects on the left.", "rms")
    audio = np.concatenate([silence(1.0), head, silence(1.2), rest, silence(3.0)])

    def hear(echo_cancel: str) -> list[tuple[int, object]]:
        config = Config(audio=dataclasses.replace(Config().audio, echo_cancel=echo_cancel))
        h = question_hearing(config, stt)
        out: list[tuple[int, object]] = []
        answering = False  # from the first end on, the answer plays
        for chunk in chunks_of(audio):
            if chunk.timestamp_ms == 960:
                h.start(chunk.timestamp_ms)
            heard = h.feed(chunk, playing=answering, echoing=answering)
            answering = answering or any(isinstance(u, Utterance) for u in heard)
            out += [(chunk.timestamp_ms + CHUNK_MS, item) for item in heard]
        return out

    heard = hear("headphones")
    utterances = [u for _, u in heard if isinstance(u, Utterance)]
    goes_on = [v for _, v in heard if isinstance(v, VoiceInterrupt)]
    assert len(utterances) == 2 and len(goes_on) == 1, heard
    assert goes_on[0].continues == utterances[0].turn_id
    text = stt.transcribe(utterances[1].samples).lower()
    assert "desk" in text and "left" in text, text
    off = hear("off")
    assert [type(u) for _, u in off if isinstance(u, Utterance | VoiceInterrupt)] == [
        Utterance], off


@pytest.mark.parametrize(("voice", "gap_s"), [("rms", 0.3), ("slt", 0.5)])
def test_the_end_of_the_wake_phrase_is_not_a_question(stt: WhisperSTT, voice: str,
                                                      gap_s: float) -> None:
    """The wake word is confirmed before "Jarvis" ends: the rest of it starts the speech and,
    paused after, would end as a question ("...vis." -> "Service.") answered before the real
    one. It is heard as the end of the phrase: one question, from the speech after the
    pause, and its audio starts a pre-roll before that speech (no "...vis")."""
    wake, asked = flite("Hey Jarvis.", voice, 1.2), flite("What is two plus two?", voice)
    audio = np.concatenate([silence(0.5), wake, silence(gap_s), asked, silence(2.5)])
    asked_ms = (len(audio) - len(asked) - int(2.5 * RATE_HZ)) * 1000 // RATE_HZ
    h = question_hearing(Config(), stt)
    heard: list[tuple[int, object]] = []
    for chunk in chunks_of(audio):
        heard += [(chunk.timestamp_ms + CHUNK_MS, item) for item in h.feed(chunk)]
    kinds = [type(item).__name__ for _, item in heard]
    assert kinds.count("WakewordDetected") == 1 and kinds.count("Utterance") == 1, heard
    woke_at = next(at for at, item in heard if isinstance(item, WakewordDetected))
    assert woke_at < asked_ms  # confirmed before the question
    [(at, u)] = [(at, u) for at, u in heard if isinstance(u, Utterance)]
    assert isinstance(u, Utterance) and at > asked_ms + 1000
    assert u.ended.duration_ms < at - asked_ms + 600  # the pause and the tail are not in it
    text = stt.transcribe(u.samples).lower()
    assert text.startswith("what is") and ("two" in text or "2" in text), text


def test_a_short_question_said_with_the_wake_phrase_is_kept(stt: WhisperSTT) -> None:
    """"Hey Jarvis, stop." in one breath: the speech going on at the detection is short and
    paused after, but its transcript with the phrase's audio has a word after the phrase:
    it is the question, not the phrase's end."""
    said = flite("Hey Jarvis stop.", "rms")
    audio = np.concatenate([silence(0.5), said, silence(2.5)])
    h = question_hearing(Config(), stt)
    heard = [item for chunk in chunks_of(audio) for item in h.feed(chunk)]
    kinds = [type(item).__name__ for item in heard]
    # Heard once, as a question (swallowed as the phrase's end, it would be no speech).
    assert kinds.count("SpeechStarted") == 1 and kinds.count("Utterance") == 1, heard
    [u] = [u for u in heard if isinstance(u, Utterance)]
    # Its words are whisper's to get right ("This step." here): there are some.
    assert words_in(stt.transcribe(u.samples))


def test_silence_after_the_end_continues_nothing(stt: WhisperSTT) -> None:
    said = flite("What is the tallest mountain in Europe?", "slt")
    audio = np.concatenate([silence(1.0), said, silence(3.0), said, silence(2.0)])
    heard = listen_from(question_hearing(Config(), stt), audio, 960)
    # The same words again 3 s later are past the window: a new question needs the wake word.
    assert [type(u) for _, u in heard if isinstance(u, Utterance | VoiceInterrupt)] == [
        Utterance], heard


def clank(rms: float = 4000.0) -> np.ndarray:
    """0.6 s of a recorded machine (OpenSFX's seventh sound) that Silero takes for speech."""
    sound = opensfx()[6][:int(0.6 * RATE_HZ)].astype(np.float64)
    return np.clip(sound * rms / np.sqrt(np.mean(sound ** 2)), -32768, 32767).astype(np.int16)


def test_a_noise_that_adds_no_words_does_not_hold_the_end_back(stt: WhisperSTT) -> None:
    """A clank right after the question: the VAD hears speech, but the next early transcript
    has the same words and the clank alone none. The silence counts from before the clank:
    the end comes ``AFTER_NOISE_S`` after it, not ``end_silence_ms``."""
    said = flite("What is the tallest mountain in Europe?", "slt")
    audio = np.concatenate([silence(1.0), said, silence(0.1), clank(), silence(2.0)])
    clank_end_ms = 1000 + len(said) * 1000 // RATE_HZ + 100 + 600
    config = Config()
    heard = listen_from(question_hearing(config, stt), audio, 960)
    pauses = [(at, p) for at, p in heard if isinstance(p, Pause)]
    assert len(pauses) == 2 and [p.repeated for _, p in pauses] == [False, True], heard
    assert pauses[0][1].text and "mountain" in pauses[0][1].text.lower()
    [(at, u)] = [(at, u) for at, u in heard if isinstance(u, Utterance)]
    assert isinstance(u, Utterance) and u.ended.reason == "silence"
    assert pauses[1][0] < at < clank_end_ms + config.stt.end_silence_ms, heard
    assert "mountain" in stt.transcribe(u.samples).lower()


def test_a_finished_sentence_ends_after_the_short_silence(stt: WhisperSTT) -> None:
    said = flite("What is the tallest mountain in Europe?", "slt")
    audio = np.concatenate([silence(1.0), said, silence(3.0)])
    last_word_ms = 1000 + len(said) * 1000 // RATE_HZ
    config = Config()
    heard = listen_from(question_hearing(config, stt), audio, 960)
    pauses = [p for _, p in heard if isinstance(p, Pause)]
    assert pauses and pauses[-1].text is not None and not unfinished(pauses[-1].text)
    ends = [at for at, u in heard if isinstance(u, Utterance)]
    assert len(ends) == 1
    assert ends[0] <= last_word_ms + config.stt.end_silence_ms + 3 * CHUNK_MS


def test_the_same_question_ends_the_same_way_after_a_long_stream(
        stt: WhisperSTT, machines: np.ndarray) -> None:
    """A daemon hears months of audio: the VAD is reset and warmed over the pre-roll at every
    question, so nothing it heard before changes where the question ends."""
    said = np.concatenate([silence(1.0), flite("Could you explain why the sky is blue?", "rms"),
                           silence(2.5)])
    rng = np.random.default_rng(5)
    talk = np.concatenate([flite("The meeting moved to Thursday afternoon.", "slt"),
                           silence(0.7)] * 6)
    before = np.concatenate([mix(talk, machines, 5.0, rng, RATE_HZ, 30 * RATE_HZ),
                             silence(20.0), machines[:30 * RATE_HZ]])
    before = before[:len(before) // 1280 * 1280]
    config = Config(stt=STTConfig(end_of_turn=False))
    fresh = listen_from(question_hearing(config, stt), said, 960)
    h = question_hearing(config, stt)
    long = listen_from(h, np.concatenate([before, said]), len(before) * 1000 // RATE_HZ + 960)

    def shape(heard: list[tuple[int, object]], offset_ms: int) -> list[tuple[str, int]]:
        return [(type(item).__name__, at - offset_ms) for at, item in heard
                if isinstance(item, SpeechStarted | Utterance)]

    assert shape(fresh, 0) == shape(long, len(before) * 1000 // RATE_HZ)
    assert [type(item).__name__ for _, item in fresh if isinstance(item, SpeechStarted | Utterance)
            ] == ["SpeechStarted", "Utterance"]


def test_a_failing_early_transcript_leaves_the_end_to_the_silence() -> None:
    from heisenberg.core.errors import STTError

    def broken(samples: np.ndarray) -> str:  # fault injection: the speech-to-text fails
        raise STTError("speech-to-text failed: the model is gone")

    config = Config()
    said = flite("What is the tallest mountain in Europe?", "slt")
    audio = np.concatenate([silence(1.0), said, silence(2.0)])
    h = hearing_for(config, OpenWakeWordEngine(config.wakeword), transcribe=broken)
    heard = listen_from(h, audio, 960)
    pauses = [p for _, p in heard if isinstance(p, Pause)]
    ends = [at for at, u in heard if isinstance(u, Utterance)]
    assert pauses and all(p.text is None for p in pauses)  # the turn task transcribes again
    assert len(ends) == 1
    assert ends[0] <= 1000 + len(said) * 1000 // RATE_HZ + config.stt.end_silence_ms + 240


def test_a_remote_speech_to_text_is_not_called_from_the_hearing(stt: WhisperSTT) -> None:
    config = Config(stt=STTConfig(engine="wyoming", uri="tcp://127.0.0.1:10300"))
    h = hearing_for(config, OpenWakeWordEngine(config.wakeword), transcribe=stt.transcribe)
    assert h.transcribe is None
    assert question_hearing(Config(), stt).transcribe is not None


def test_the_answer_being_ready_ends_the_wait_between_two_chunks(stt: WhisperSTT) -> None:
    config = Config()
    h = question_hearing(config, stt)
    audio = np.concatenate([silence(1.0), flite("What is the capital of France?", "slt"),
                            silence(3.0)])
    paused_ms: int | None = None
    heard: list[object] = []
    for chunk in chunks_of(audio):
        if chunk.timestamp_ms == 960:
            h.start(960)
        end_ms = chunk.timestamp_ms + CHUNK_MS
        # Waiting for the early answer: the end does not come after end_silence_ms ...
        items = h.feed(chunk, preparing=paused_ms is not None)
        heard += items
        if any(isinstance(i, Pause) for i in items):
            paused_ms = end_ms
        if paused_ms is not None and end_ms - paused_ms >= config.stt.end_silence_ms:
            break
    assert paused_ms is not None and not any(isinstance(i, Utterance) for i in heard), heard
    assert h.listening_to and h.endpointer.silence_s >= config.stt.end_silence_ms / 1000
    # ... and once the answer can play, it comes at once, at the last chunk's audio time.
    [ended] = h.answer_ready()
    assert isinstance(ended, Utterance) and ended.ended.reason == "silence"
    assert ended.ended.audio_ms == end_ms - 960
    assert not h.listening_to and h.answer_ready() == []
