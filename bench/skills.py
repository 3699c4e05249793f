"""Benchmark: skills before the LLM (the time, the date, timers).

    python bench/skills.py [--out bench/results/skills.json]

- Recognition on phrasings held out from the tests' lists (paraphrases, and what whisper
  tiny.en writes for them: lower case, no punctuation, "whats"), and false matches on
  ordinary questions (every question of the other benchmarks, and more).
- Time from the question (transcribed) to the first answer sample handed to the speaker for
  "What time is it?": the assistant's turn with Piper, as the voice loop runs it after the
  end-of-speech decision; the LLM server is not needed (and not asked).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from barge_in import ANSWERS, QUESTIONS
from common import run, summary
from follow_up import QUESTIONS as FOLLOW_UPS
from interrupt import SAID

from heisenberg.audio.sinks import WavFileSink
from heisenberg.core.bus import EventBus
from heisenberg.core.config import Config
from heisenberg.core.events import TTSStarted
from heisenberg.llm.stream import LlamaCppLLM
from heisenberg.orchestrator.assistant import Assistant, Voice
from heisenberg.skills import Skills, Timers
from heisenberg.voice.tts import PiperTTS

HELD_OUT = {
    "HassGetCurrentTime": [
        "what time is it", "whats the time", "What's the time now?", "Time please.",
        "What's the current time?", "Could you tell me what time it is?",
        "Tell me what time it is.", "What time is it right now?", "what is the time",
        "Hey what time is it", "Okay, what's the time?", "Do you have the time?",
        "What's the time, please?", "Current time?", "Can you tell me the time?",
    ],
    "HassGetCurrentDate": [
        "whats the date", "What's the date today?", "What date is it today?",
        "What's the date today, please?", "Tell me today's date.", "What date is it?",
        "what is todays date", "What day of the month is it?", "What's the current date?",
        "Which day is it today?", "So what's the date?", "Can you tell me the date?",
    ],
}
HELD_OUT_TIMERS = {
    "HassStartTimer": [
        "set a timer for ten minutes", "Set a 3 minute timer.", "Start a timer for 45 seconds.",
        "Timer for 20 minutes.", "Set a timer for 1 hour.", "Create a timer for 2 minutes.",
        "Set an egg timer for 6 minutes.", "Hey, set a timer for 15 minutes.",
        "Can you set a timer for 4 minutes?", "Set a timer for half an hour.",
        "set timer for 90 seconds", "Start a 25 minute timer.", "Set a timer for a minute.",
        "Please start a timer for 12 minutes.", "Set a timer for 2 hours and 15 minutes.",
        "I need a timer for 5 minutes.", "Start a timer called laundry for 40 minutes.",
        "Set a timer for five and a half minutes.",
    ],
    "HassCancelTimer": [
        "cancel the timer", "Stop the timer.", "Cancel my 10 minute timer.",
        "Cancel the laundry timer.", "Turn off the timer.", "Delete the timer.",
    ],
    "HassTimerStatus": [
        "how much time is left", "How much time is left on the timer?",
        "How long is left on my egg timer?", "What's the status of the timer?",
        "How much longer on the timer?", "Time left on my timer?",
    ],
    "HassPauseTimer": ["Pause the timer.", "pause my timer", "Hold the timer."],
    "HassUnpauseTimer": ["Resume the timer.", "Continue my timer.", "Unpause the timer."],
    "HassIncreaseTimer": ["Add 5 minutes to the timer.", "Add a minute to my timer.",
                          "Increase the timer by 30 seconds."],
    "HassCancelAllTimers": ["Cancel all timers.", "Cancel all my timers.",
                            "Stop all the timers."],
}
ORDINARY = [
    *QUESTIONS, *FOLLOW_UPS, *SAID, *ANSWERS,
    "What time does the sun set?", "What time is it in New York?", "What's the time zone of "
    "Paris?", "How long until Christmas?", "When is my next meeting?", "What year did the war "
    "end?", "What day was the fourth of July last year?", "Is it time for lunch?",
    "Date night ideas?", "What's the best time to visit Japan?", "Remind me tomorrow.",
    "How old is the universe?", "Translate good morning into French.", "Play some music.",
    "What is the date of Easter next year?", "Time to go.", "Tell me a joke.",
    "How long does it take to boil an egg?", "What is a timer?", "How do kitchen timers "
    "work?", "Set the table.", "How many minutes are in an hour?", "Cancel my subscription.",
    "Pause the music.", "Add milk to the list.", "How much time do I need to cook pasta?",
]
# The other benchmarks' questions include a timer request: a skill now, rightly.
ORDINARY = [q for q in ORDINARY if q != "Set a timer for ten minutes."]


async def measure(args: argparse.Namespace) -> dict[str, object]:
    started = time.perf_counter()
    timers = Timers(lambda event: None)  # only recognized here: nothing is set
    skills = Skills(timers=timers)
    skills.intents  # noqa: B018 - built on first use: the load is timed here
    load_ms = (time.perf_counter() - started) * 1000
    recognized: dict[str, dict[str, object]] = {}
    missed = []
    for intent, texts in {**HELD_OUT, **HELD_OUT_TIMERS}.items():
        got = [skills.recognize(t) for t in texts]
        missed += [t for t, g in zip(texts, got, strict=True) if g != intent]
        recognized[intent] = {"n": len(texts), "share": round(
            sum(g == intent for g in got) / len(texts), 3)}
    false = [t for t in ORDINARY if skills.recognize(t) is not None]
    times = []
    for text in [t for ts in (*HELD_OUT.values(), *HELD_OUT_TIMERS.values()) for t in ts] * 10:
        t0 = time.perf_counter()
        skills.recognize(text)
        times.append((time.perf_counter() - t0) * 1000)

    config = Config()
    tts = PiperTTS(config.tts)
    bus = EventBus()
    backend = LlamaCppLLM(config.llm, "http://127.0.0.1:9")  # never asked: nothing listens
    first_audio = []
    try:
        assistant = Assistant(config, bus, backend)
        with tempfile.TemporaryDirectory() as tmp:
            for k in range(args.turns + 1):
                sink = WavFileSink(Path(tmp) / f"{k}.wav", tts.rate_hz)
                t0 = time.perf_counter()
                async with assistant.turn("What time is it?", voice=Voice(tts, sink)) as turn:
                    async for event in turn:
                        if isinstance(event, TTSStarted) and k > 0:  # the first warms up
                            first_audio.append((time.perf_counter() - t0) * 1000)
                assert turn.outcome.error is None, turn.outcome.error
    finally:
        await backend.close()
        await bus.close()
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "recognized_held_out": recognized, "missed": missed,
        "ordinary_questions": len(ORDINARY), "false_matches": false,
        "load_ms": round(load_ms, 1), "recognize_ms": summary(times, 2),
        "what_time_is_it_first_audio_ms": summary(first_audio),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--out", default="bench/results/skills.json")
    run(measure, ap)


if __name__ == "__main__":
    main()
