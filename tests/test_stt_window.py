"""Whisper on a short window (``stt.window_s``): the same words as on the full window, the
full window when the short one loops or whisper is unsure of it, and never for speech it does
not fit."""

from __future__ import annotations

import numpy as np

from heisenberg.core.config import STTConfig
from heisenberg.voice.stt import WhisperSTT, _trusted
from tests.conftest import flite, silence

QUESTIONS = [("What time is it in Tokyo?", "kal16"), ("How many legs does a spider have?", "awb"),
             ("Set a timer for ten minutes.", "slt"), ("What is the capital of France?", "rms")]


def words(text: str) -> list[str]:
    return [w.strip(".,?!").lower().replace("10", "ten") for w in text.split()]


def test_a_short_question_is_heard_on_the_short_window_as_on_the_full_one(
        stt: WhisperSTT) -> None:
    full = WhisperSTT(STTConfig(window_s=30))
    before = stt.full_windows
    for text, voice in QUESTIONS:
        audio = np.concatenate([silence(0.3), flite(text, voice), silence(0.3)])
        short = stt.transcribe(audio)
        assert words(short) == words(full.transcribe(audio)), text
        assert words(short) == words(text)
    assert stt.full_windows == before  # none of them needed the full window
    assert full.full_windows == len(QUESTIONS)


def test_silence_is_nothing_on_the_short_window(stt: WhisperSTT) -> None:
    before = stt.full_windows
    assert stt.transcribe(silence(2.0)) == ""
    assert stt.full_windows == before


def test_speech_too_long_for_a_short_window_takes_the_full_one(stt: WhisperSTT) -> None:
    part = flite("I keep forgetting things, so remind me to water the plants on Sunday.")
    audio = np.concatenate([part] * int(np.ceil(27 * 16000 / len(part))))[:27 * 16000]
    before = stt.full_windows
    text = stt.transcribe(audio)
    assert stt.full_windows == before + 1  # 27 s + 4 s of padding is over whisper's 30 s
    assert "plants" in text.lower()


def test_a_looping_transcript_is_not_trusted(stt: WhisperSTT) -> None:
    tokenizer = stt._model.hf_tokenizer

    def tokens(text: str) -> list[int]:
        return list(tokenizer.encode(" " + text, add_special_tokens=False).ids)

    fine = "Could you suggest a good book for a long flight to Japan?"
    assert _trusted(fine, tokens(fine))
    looped = "Could you suggest a good book for a long flight to Japan? Could you suggest"
    assert not _trusted(looped, tokens(looped))
    stutter = "What time is it into O''''''"
    assert not _trusted(stutter, tokens(stutter))


def test_an_unsure_transcript_is_redone_on_the_full_window(stt: WhisperSTT) -> None:
    """Whisper is unsure of a lone "Stop." said by flite's slt (log-probability -2.1): it
    is heard again on the full window (greedily, once), and without ``redo`` it is not."""
    audio = np.concatenate([silence(0.2), flite("Stop.", "slt"), silence(0.15)])
    before = stt.full_windows
    text = stt.transcribe(audio)
    assert stt.last_log_prob is not None and stt.last_log_prob < -1.0, stt.last_log_prob
    assert stt.full_windows == before + 1
    assert "stop" in text.lower()
    assert "stop" in stt.transcribe(audio, redo=False).lower()
    assert stt.full_windows == before + 1
