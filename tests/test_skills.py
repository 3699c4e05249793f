"""Skills before the LLM: the time and the date, recognized by hassil on Home Assistant's
sentence templates, answered exactly and spoken through the turn's own speech path; every
other question still goes to the real LLM."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from heisenberg.audio.sinks import WavFileSink
from heisenberg.core.bus import EventBus
from heisenberg.core.errors import ConfigError
from heisenberg.core.events import Event, LLMComplete
from heisenberg.llm.stream import LlamaCppLLM
from heisenberg.orchestrator.assistant import Assistant, Voice
from heisenberg.skills import Skills
from heisenberg.voice.tts import PiperTTS
from tests.conftest import RunningServer, config_for

NOW = datetime(2026, 12, 2, 20, 42)

# Phrasings of mine, with whisper's habits (capitals, full stops, "What's").
TIME = ["What time is it?", "what time is it", "What's the time?", "Tell me the time.",
        "What is the time?", "What time is it now?", "Hey, what time is it?",
        "Do you know what time it is?", "Um, what time is it?"]
DATE = ["What's the date?", "What is the date today?", "What's today's date?",
        "What is today's date?", "Tell me the date.", "What day is it today?"]
ORDINARY = ["What time is it in Tokyo?", "How tall is the Eiffel Tower?",
            "What is the capital of Italy?", "What is two plus two?",
            "Time flies like an arrow.", "What date was the moon landing?",
            "Set a timer for five minutes.", "Turn on the kitchen light.", "Stop.",
            "Never mind.", "What's the weather like tomorrow?", "Who wrote the Odyssey?",
            "What is the time complexity of quicksort?", "Is it a good time to buy a house?"]


@pytest.fixture(scope="module")
def skills() -> Skills:
    return Skills(clock=lambda: NOW)


def test_the_time_and_the_date_are_recognized_and_said_exactly(skills: Skills) -> None:
    for text in TIME:
        answer = skills.answer(text)
        assert answer is not None and answer.intent == "HassGetCurrentTime", text
        assert answer.text == "It's 8:42 PM."
    for text in DATE:
        answer = skills.answer(text)
        assert answer is not None and answer.intent == "HassGetCurrentDate", text
        assert answer.text == "Today is Wednesday, December 2, 2026."
    midnight = Skills(clock=lambda: datetime(2026, 1, 5, 0, 5)).answer("What time is it?")
    assert midnight is not None and midnight.text == "It's 12:05 AM."


def test_ordinary_questions_are_left_to_the_llm(skills: Skills) -> None:
    matched = {text: skills.recognize(text) for text in ORDINARY}
    assert not {text: intent for text, intent in matched.items() if intent}, matched


def test_a_language_without_phrases_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="'xx'"):
        Skills("xx")


async def test_a_skill_answers_without_the_llm_and_is_spoken_and_kept(
        llama_server: RunningServer, tts: PiperTTS, tmp_path: Path) -> None:
    """"What time is it?" is answered by the skill (no tokens asked of the model), spoken
    with Piper like any answer and kept in the history; the next question goes to the
    model."""
    config = config_for(llama_server.url)
    bus = EventBus()
    backend = LlamaCppLLM(config.llm, llama_server.url)
    try:
        assistant = Assistant(config, bus, backend)
        assistant.skills = Skills(clock=lambda: NOW)
        sink = WavFileSink(tmp_path / "answer.wav", tts.rate_hz)
        got: list[Event] = []
        async with assistant.turn("What time is it?", voice=Voice(tts, sink)) as turn:
            async for event in turn:
                got.append(event)
        [complete] = [e for e in got if isinstance(e, LLMComplete)]
        assert complete.stop_reason == "skill:HassGetCurrentTime"
        assert complete.completion_tokens == 0 and complete.text == "It's 8:42 PM."
        assert turn.outcome.answer == "It's 8:42 PM." and turn.outcome.spoken
        assert sink.played_ms > 500  # said aloud, not only written
        history = assistant.session.prompt_history(8)
        assert [(t.user, t.assistant) for t in history][-1:] == [("What time is it?",
                                                                   "It's 8:42 PM.")]
        async with assistant.turn("What is the capital of France?") as turn:
            events = [e async for e in turn]
        [complete] = [e for e in events if isinstance(e, LLMComplete)]
        assert not complete.stop_reason.startswith("skill") and complete.completion_tokens > 0
    finally:
        await backend.close()
        await bus.close()


def test_what_the_pre_roll_brought_before_the_question_is_left_out(skills: Skills) -> None:
    """Whisper writes what came before the question as a sentence of its own: the last one
    is the question."""
    answer = skills.answer("This. What time is it?")
    assert answer is not None and answer.text == "It's 8:42 PM."
    assert skills.recognize("I'm in Tokyo. Is it a good time to buy a house?") is None
