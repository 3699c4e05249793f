"""Pure parts of the voice loop: endpointing, sentence splitting, text cleaning, audio format."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from heisenberg.audio.format import CHUNK_SAMPLES, AudioChunk, chunks_of, read_wav, resample
from heisenberg.audio.sinks import NullSink
from heisenberg.orchestrator.voice import earcon
from heisenberg.voice.tts import SentenceSplitter, speakable
from heisenberg.voice.vad import Endpointer, EndpointEvent
from heisenberg.voice.wakeword import after_wake_word, strip_wake_word, wake_word_text

CHUNK_S = 0.08


def feed(ep: Endpointer, pattern: str) -> list[tuple[int, EndpointEvent]]:
    """'s' = a speech chunk, '.' = a silent chunk; returns (chunk index, event)."""
    out = []
    for i, c in enumerate(pattern):
        event = ep.process(CHUNK_S, c == "s")
        if event is not None:
            out.append((i, event))
    return out


def test_endpointer_start_and_end_by_audio_time() -> None:
    ep = Endpointer(end_silence_s=0.64, max_utterance_s=10, no_speech_timeout_s=5)
    events = feed(ep, "..sss.s" + "." * 10)
    assert events[0] == (3, EndpointEvent.SPEECH_STARTED)  # two speech chunks = 0.16 s
    # Silence counted from the last speech chunk (index 6): 8 chunks = 0.64 s.
    assert events[1] == (14, EndpointEvent.SPEECH_ENDED)
    assert ep.done and ep.process(CHUNK_S, True) is None


def test_short_pause_does_not_end_speech() -> None:
    ep = Endpointer(end_silence_s=0.64)
    assert [e for _, e in feed(ep, "sss" + "." * 5 + "sss")] == [EndpointEvent.SPEECH_STARTED]


def test_single_click_is_not_speech_and_no_speech_times_out() -> None:
    ep = Endpointer(no_speech_timeout_s=0.8)
    assert feed(ep, ".s.s.s.s.s.") == [(9, EndpointEvent.NO_SPEECH)]


def test_a_restart_waits_for_speech_again_from_there() -> None:
    """What was heard was not the question (the wake phrase's end): speech starts again, and
    the no-speech timeout counts from the restart, in the same audio time."""
    ep = Endpointer(end_silence_s=0.64, no_speech_timeout_s=0.8)
    assert feed(ep, "sss..") == [(1, EndpointEvent.SPEECH_STARTED)]
    ep.restart()
    assert not ep.in_speech and ep.elapsed_s == pytest.approx(5 * CHUNK_S)
    assert feed(ep, "......") == []  # 0.48 s since the restart: still waiting
    assert feed(ep, "ss") == [(1, EndpointEvent.SPEECH_STARTED)]
    assert ep.speech_start_at_s == pytest.approx(11 * CHUNK_S)
    ep.restart()
    assert feed(ep, "." * 10) == [(9, EndpointEvent.NO_SPEECH)]


def test_max_utterance_length() -> None:
    ep = Endpointer(max_utterance_s=0.8)
    events = feed(ep, "s" * 20)
    assert events[-1] == (9, EndpointEvent.MAX_LENGTH)  # 10 chunks of speech = 0.8 s


def test_splitter_emits_sentences_as_they_complete() -> None:
    s = SentenceSplitter()
    assert s.feed("The capital") == []
    assert s.feed(" is Paris.") == []  # could still be "Paris.com": wait for the next token
    assert s.feed(" It is") == ["The capital is Paris."]
    assert s.feed(" big! Pi is 3.14") == ["It is big!"]
    assert s.feed(" exactly?") == []
    assert s.flush() == ["Pi is 3.14 exactly?"]


def test_splitter_cuts_a_long_first_sentence_at_a_clause() -> None:
    s = SentenceSplitter(first_clause_chars=40)
    out = s.feed("Well, there are many things to consider here, and the first one is")
    assert out == ["Well, there are many things to consider here,"]


@pytest.mark.parametrize(("tokens", "first"), [
    (["The", " capital", " of", " France", " is", " Paris", "."], "The capital of France"),
    (["A", " black", " hole", " is", " a", " region", "."], "A black hole"),
    (["Gravity", " is", " a", " force", " that", " pulls", "."], "Gravity is a force"),
    # not after a pronoun, a function word, a comma; not with fewer than three words before
    (["I", " think", " that", " you", " are", " right", ".", " So"], "I think that you are right."),
    (["The", " speed", " of", " light", " and"], ""),
    (["Well", ",", " there", " is", " a", " way", ".", " So"], "Well, there is a way."),
    (["Oh", " my", " dear", ",", " and", " then", " we"], ""),
    # "is" could still be the start of "island": cut only once the word is complete
    (["The", " big", " green", " is"], ""),
    (["The", " big", " green", " is", "land", " is", " far"], "The big green island"),
])
def test_the_first_piece_may_be_the_first_phrase(tokens: list[str], first: str) -> None:
    from heisenberg.voice.tts import splitter_for

    s = splitter_for("en", first_phrase=True)
    out = [piece for token in tokens for piece in s.feed(token)]
    assert (out[0] if out else "") == first
    plain = splitter_for("en", first_phrase=False)
    assert all(not p.endswith(("France", "hole")) for t in tokens for p in plain.feed(t))


@pytest.mark.parametrize(("lang", "tokens", "pieces"), [
    # a mark right after a word ends the sentence as it arrives ...
    ("en", ["I", " don", "'t", " know", "."], ["I don't know."]),
    ("en", ["Is", " it", " blue", "?"], ["Is it blue?"]),
    # ... not after a number, an abbreviation, initials, or inside a quote or brackets,
    ("en", ["It", " costs", " 3", "."], []),
    ("en", ["Ask", " Dr", "."], []),
    ("en", ["Ask", " Dr", ".", " Smith", " now", "."], ["Ask Dr. Smith now."]),
    ("en", ["Use", " e", ".", "g", "."], []),
    ("en", ["He", " said", ' "', "hello", "."], []),
    ("en", ["It", " is", " blue", " (", "mostly", "."], []),
    ("fr", ["Parlez", " à", " Mme", "."], []),
    ("fr", ["C", "'est", " la", " mer", "."], ["C'est la mer."]),
    # and what follows a mark alone is not a piece ("What?!" is one question)
    ("en", ["What", "?", "!", " Yes", "."], ["What?", "Yes."]),
])
def test_a_sentence_ends_as_its_mark_arrives(lang: str, tokens: list[str],
                                             pieces: list[str]) -> None:
    from heisenberg.voice.tts import splitter_for

    s = splitter_for(lang, first_phrase=True)
    assert [p for t in tokens for p in s.feed(t)] == pieces
    plain = SentenceSplitter()  # without the language's abbreviations: the last mark waits
    assert [plain.feed(t) for t in tokens][-1] == []


def test_the_first_phrase_in_french() -> None:
    from heisenberg.voice.tts import splitter_for

    s = splitter_for("fr", first_phrase=True)
    out = [p for t in ["La", " capitale", " de", " la", " France", " est", " Paris"]
           for p in s.feed(t)]
    assert out == ["La capitale de la France"]


def test_splitter_skips_code_blocks_whole() -> None:
    s = SentenceSplitter()
    out = s.feed("Run this:\n\n```python\nprint('hi. there.')\n```\n\nDone. ")
    assert out == ["Run this:", "Done."]


@pytest.mark.parametrize(("text", "spoken"), [
    ("**Paris** is the _capital_.", "Paris is the capital."),
    ("# Title\n- one\n- two", "Title one two"),
    ("1. first\n2) second", "first second"),
    (" 1000.\n", "1000."),
    ("It has 8 legs.\n", "It has 8 legs."),
    ("Great 🎉 job 👍", "Great job"),
    ("See [the docs](http://x.y/z) or https://example.com now", "See the docs or a link now"),
    ("Use `ls -l` then\n```\nrm -rf /\n```\nok", "Use ls -l then ok"),
])
def test_speakable(text: str, spoken: str) -> None:
    assert speakable(text) == spoken


@pytest.mark.parametrize(("text", "out"), [
    (" Hey Jarvis, what is the capital of France?", "What is the capital of France?"),
    ("Jarvis. What time is it?", "What time is it?"),
    ("What does Jarvis mean in Iron Man?", "What does Jarvis mean in Iron Man?"),
    ("I hate Jarvis, what time is it?", "What time is it?"),
    ("Okay. Hey Jarvis. Turn on the light.", "Turn on the light."),
    ("Who is Jarvis?", "Who is Jarvis?"),
    ("Ask my friend Jarvis, please.", "Ask my friend Jarvis, please."),
    ("Tell me a joke.", "Tell me a joke."),
])
def test_strip_wake_word(text: str, out: str) -> None:
    assert strip_wake_word(text, "jarvis") == out


def test_wake_word_text() -> None:
    assert wake_word_text("hey_jarvis") == "jarvis"
    assert wake_word_text("okay_nabu") == "nabu"
    assert wake_word_text("alexa") == "alexa"


def test_resample_and_chunks() -> None:
    tone = (np.sin(np.arange(22050) / 22050 * 2 * np.pi * 440) * 10000).astype(np.int16)
    out = resample(tone, 22050, 16000)
    assert out.dtype == np.int16 and abs(len(out) - 16000) <= 2
    chunks = chunks_of(out)
    assert all(len(c.pcm) == CHUNK_SAMPLES * 2 for c in chunks)
    assert [c.timestamp_ms for c in chunks[:3]] == [0, 80, 160]
    assert chunks[0].duration_ms == 80


def test_read_wav_converts_stereo_44k(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(np.zeros(44100 * 2, np.int16).tobytes())
    assert abs(len(read_wav(path)) - 16000) <= 2


@pytest.mark.parametrize(("content", "words"), [(b"not a wav", "not a readable WAV")])
def test_read_wav_rejects_garbage(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=words):
        read_wav(path)


def test_read_wav_rejects_8_bit(tmp_path: Path) -> None:
    path = tmp_path / "8bit.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(16000)
        wav.writeframes(b"\x80" * 1600)
    with pytest.raises(ValueError, match="8-bit"):
        read_wav(path)


def test_earcon_is_short_and_audible() -> None:
    chunk: AudioChunk = earcon(22050, 880.0)
    assert 100 <= chunk.duration_ms <= 150
    assert np.abs(chunk.array()).max() > 5000


async def test_a_sink_knows_what_words_it_is_playing() -> None:
    sink = NullSink()
    assert sink.now_playing is None and sink.hearing() == ""
    chunk = AudioChunk(np.zeros(1600, np.int16).tobytes())
    await sink.play_text(chunk, "Hey Jarvis.")
    await sink.play_text(chunk, "That is my name.")
    assert sink.now_playing is None  # done playing, but the echo may still be in the room
    assert sink.hearing() == "Hey Jarvis. That is my name."
    assert sink.hearing(echo_s=0.0) == ""
    await sink.play(chunk)  # a sound without words (an earcon)
    assert sink.played_ms == 300


@pytest.mark.parametrize(("text", "out"), [
    ("What time is it? Hey Jarvis, stop.", "stop."),
    ("Describe my desk, starting on the left.", "Describe my desk, starting on the left."),
    ("What does Jarvis mean, in Iron Man?", "What does Jarvis mean, in Iron Man?"),
    ("Hey Jarvis, what is it? Okay Jarvis.", ""),
])
def test_after_wake_word(text: str, out: str) -> None:
    assert after_wake_word(text, "jarvis") == out
