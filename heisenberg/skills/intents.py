"""Intent recognition before the LLM: ``Skills.answer(question)`` says the time or the date
exactly, or returns None and the question goes to the LLM as before.

Recognition is ``hassil`` on Home Assistant's own sentence templates
(``home-assistant-intents``, Apache-2.0: the phrasings Assist understands, in its 60-odd
languages), limited to the intents answered here. A fraction of a millisecond of pure
Python per question; the first one imports hassil and builds the templates (~0.1-0.2 s), so
callers run it in a worker thread and nothing of it is paid at start-up. What the answers
say, per language, is data (``PHRASES``), so that another language is a data change.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from heisenberg.core.errors import ConfigError

log = logging.getLogger(__name__)

PHRASES: dict[str, dict[str, Any]] = {
    "en": {
        "time": "It's {hour12}:{minute:02d} {ampm}.",
        "date": "Today is {weekday}, {month} {day}, {year}.",
        "weekdays": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                     "Sunday"),
        "months": ("January", "February", "March", "April", "May", "June", "July", "August",
                   "September", "October", "November", "December"),
        # Said to a desk assistant and missing from Home Assistant's templates (hassil's
        # syntax: [optional], (one|other)).
        "sentences": {
            "HassGetCurrentTime": ["(do you know|can you tell me) what time it is"],
            "HassGetCurrentDate": ["what day is it [today]", "what day is today",
                                   "what is today"],
        },
        "fillers": ("hey", "hi", "okay", "ok", "so", "um", "uh", "well", "oh"),
    },
}
"""What the skills say and hear beyond Home Assistant's templates, per language: the answers'
templates and the names they fill in, extra sentences, and words said before a question
("Hey, what time is it?") that are dropped before matching."""

HANDLED = ("HassGetCurrentTime", "HassGetCurrentDate")
"""The intents answered here; the others of Home Assistant's set are not recognized (a
question about lights or timers still goes to the LLM)."""


@dataclass(frozen=True)
class SkillAnswer:
    intent: str
    """The Home Assistant intent that matched (``HassGetCurrentTime``)."""
    text: str
    """What to say."""


class Skills:
    def __init__(self, language: str = "en",
                 clock: Callable[[], datetime] = datetime.now) -> None:
        from home_assistant_intents import get_languages

        if language not in get_languages() or language not in PHRASES:
            raise ConfigError(f"skills: no intents or phrases for language {language!r}")
        self.language = language
        self.phrases = PHRASES[language]
        self.clock = clock

    @functools.cached_property
    def intents(self) -> Any:
        """Home Assistant's templates of ``HANDLED`` with ours, built on first use."""
        from hassil import Intents
        from home_assistant_intents import get_intents

        data = get_intents(self.language)
        assert data is not None  # the language was checked against get_languages()
        intents = {}
        for name in HANDLED:
            own = {"sentences": self.phrases["sentences"].get(name, [])}
            intents[name] = {"data": [*data["intents"].get(name, {}).get("data", []), own]}
        return Intents.from_dict(dict(data, intents=intents))

    def recognize(self, text: str) -> str | None:
        """The intent ``text`` expresses, among ``HANDLED``; None for anything else."""
        from hassil import recognize
        from hassil.errors import HassilError

        words = text.strip().split(maxsplit=1)
        if len(words) == 2 and words[0].strip(",.!").lower() in self.phrases["fillers"]:
            text = words[1]
        try:
            result = recognize(text, self.intents)
        except HassilError as exc:  # a template that needs a list we do not have
            log.warning("skills: %r not recognized (%s)", text, exc)
            return None
        return result.intent.name if result is not None else None

    def answer(self, text: str) -> SkillAnswer | None:
        """The exact answer to ``text``, or None: the LLM answers it."""
        intent = self.recognize(text)
        if intent is None:
            return None
        now = self.clock()
        p = self.phrases
        if intent == "HassGetCurrentTime":
            said = p["time"].format(hour12=now.hour % 12 or 12, minute=now.minute,
                                    ampm="AM" if now.hour < 12 else "PM", hour=now.hour)
        else:
            said = p["date"].format(weekday=p["weekdays"][now.weekday()],
                                    month=p["months"][now.month - 1], day=now.day,
                                    year=now.year)
        return SkillAnswer(intent, said)
