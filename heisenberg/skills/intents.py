"""Intent recognition before the LLM: ``Skills.answer(question)`` says the time or the date
exactly, sets, cancels, pauses and reports timers (with a ``Timers``), or returns None and
the question goes to the LLM as before.

Recognition is ``hassil`` on Home Assistant's own sentence templates
(``home-assistant-intents``, Apache-2.0: the phrasings Assist understands, in its 60-odd
languages), limited to the intents answered here. A fraction of a millisecond of pure
Python per question; the first one imports hassil and builds the templates (~0.1-0.2 s), so
callers run it in a worker thread and nothing of it is paid at start-up. What the answers
say, per language, is data (``heisenberg/lang``), so that another language is a data change.
Recognizing (``match``) may run in a worker thread; acting on a timer (``reply``) runs on the
event loop, where the timers live.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from heisenberg.core.errors import ConfigError, TimerError
from heisenberg.lang import language as words
from heisenberg.skills.timers import Timer, Timers

log = logging.getLogger(__name__)

CLOCK = ("HassGetCurrentTime", "HassGetCurrentDate")
TIMER = ("HassStartTimer", "HassCancelTimer", "HassCancelAllTimers", "HassTimerStatus",
         "HassPauseTimer", "HassUnpauseTimer", "HassIncreaseTimer", "HassDecreaseTimer")
"""The intents answered here (the timers' only with a ``Timers``); the others of Home
Assistant's set are not recognized (a question about the lights still goes to the LLM).
"Never mind" is the voice loop's dismissal, not a skill."""
UNSUPPORTED_SLOTS = ("{area}", "conversation_command")
"""Templates that need what a desk assistant does not have (rooms; commands run later by
Home Assistant) are left out."""


_SENTENCES = re.compile(r"(?<=[.!?…])\s+")


@dataclass(frozen=True)
class Match:
    intent: str
    slots: dict[str, Any]
    """What the template took from the sentence (``minutes``: 5, ``name``: "pasta")."""


@dataclass(frozen=True)
class SkillAnswer:
    intent: str
    """The Home Assistant intent that matched (``HassGetCurrentTime``)."""
    text: str
    """What to say."""


class Skills:
    def __init__(self, language: str = "en",
                 clock: Callable[[], datetime] = datetime.now,
                 timers: Timers | None = None) -> None:
        from home_assistant_intents import get_languages

        if language not in get_languages():
            raise ConfigError(f"skills: Home Assistant has no intents for {language!r}")
        self.language = language
        self.phrases = words(language).skills
        self.clock = clock
        self.timers = timers
        self.handled = CLOCK + (TIMER if timers is not None else ())

    @functools.cached_property
    def intents(self) -> Any:
        """Home Assistant's templates of the handled intents with ours, built on first use."""
        from hassil import Intents
        from home_assistant_intents import get_intents

        data = get_intents(self.language)
        assert data is not None  # the language was checked against get_languages()
        intents = {}
        for name in self.handled:
            own = {"sentences": self.phrases["sentences"].get(name, [])}
            theirs = [block for block in data["intents"].get(name, {}).get("data", [])
                      if not any(slot in sentence for sentence in block["sentences"]
                                 for slot in UNSUPPORTED_SLOTS)]
            intents[name] = {"data": [*theirs, own]}
        return Intents.from_dict(dict(data, intents=intents))

    def match(self, text: str) -> Match | None:
        """The handled intent ``text`` expresses, with its slots; None for anything else.
        When the whole text is not one, its last sentence is tried: what the pre-roll
        brings from before the question becomes a sentence of its own ("This. What time is
        it?")."""
        found = self._match(text)
        sentences = [s for s in _SENTENCES.split(text.strip()) if s.strip()]
        if found is None and len(sentences) > 1:
            found = self._match(sentences[-1])
        return found

    def _match(self, text: str) -> Match | None:
        from hassil import recognize
        from hassil.errors import HassilError

        words = text.strip().split(maxsplit=1)
        if len(words) == 2 and words[0].strip(",.!").lower() in self.phrases["fillers"]:
            text = words[1]
        for pattern, replacement in self.phrases["rewrites"]:
            text = re.sub(pattern, replacement, text, flags=re.IGNORECASE)
        try:
            result = recognize(text, self.intents)
        except HassilError as exc:  # a template that needs a list we do not have
            log.warning("skills: %r not recognized (%s)", text, exc)
            return None
        if result is None:
            return None
        return Match(result.intent.name, {k: e.value for k, e in result.entities.items()})

    def recognize(self, text: str) -> str | None:
        """The name of the intent ``text`` expresses, among the handled ones; or None."""
        found = self.match(text)
        return found.intent if found is not None else None

    def answer(self, text: str) -> SkillAnswer | None:
        """The exact answer to ``text``, or None: the LLM answers it. (With timers: on the
        event loop.)"""
        found = self.match(text)
        return self.reply(found) if found is not None else None

    def reply(self, found: Match) -> SkillAnswer:
        """Do what ``found`` asks and say so (a timer is set on the event loop)."""
        if found.intent in TIMER:
            assert self.timers is not None  # timer intents are recognized only with timers
            try:
                said = self._timer(found.intent, found.slots, self.timers)
            except TimerError as exc:
                why = self.phrases["timer_errors"].get(exc.why, exc.message)
                said = self.phrases["timer"]["failed"].format(why=why)
            return SkillAnswer(found.intent, said)
        now = self.clock()
        p = self.phrases
        if found.intent == "HassGetCurrentTime":
            hour_unit = p["units"]["hour"][0 if now.hour < 2 else 1]
            template = p["time_on_the_hour"] if now.minute == 0 and "time_on_the_hour" in p \
                else p["time"]
            said = template.format(hour12=now.hour % 12 or 12, minute=now.minute,
                                   ampm="AM" if now.hour < 12 else "PM", hour=now.hour,
                                   hour_unit=hour_unit)
        else:
            said = p["date"].format(weekday=p["weekdays"][now.weekday()],
                                    month=p["months"][now.month - 1],
                                    day=p.get("day_names", {}).get(now.day, now.day),
                                    year=now.year)
        return SkillAnswer(found.intent, said)

    # --- timers ---------------------------------------------------------------------------

    def spoken_duration(self, seconds: float, adjective: bool = False) -> str:
        """"1 hour, 5 minutes and 3 seconds"; with ``adjective`` a single unit in the
        singular ("5 minute", for "your 5 minute timer")."""
        units = self.phrases["units"]
        total = max(1, round(seconds))
        parts = [(n, unit) for n, unit in ((total // 3600, "hour"), (total % 3600 // 60,
                                           "minute"), (total % 60, "second")) if n]
        if adjective and len(parts) == 1 and self.phrases.get("adjective_units", True):
            return f"{parts[0][0]} {units[parts[0][1]][0]}"
        said = [f"{n} {units[unit][0 if n == 1 else 1]}" for n, unit in parts]
        if len(said) == 1:
            return said[0]
        return f"{', '.join(said[:-1])} {self.phrases['and']} {said[-1]}"

    def timer_label(self, timer: Timer) -> str:
        """"pasta timer", "5 minute timer", "timer for 1 hour and 30 minutes"."""
        t = self.phrases["timer"]
        if timer.name:
            return t["named"].format(name=timer.name)
        single = self.spoken_duration(timer.duration_s, adjective=True)
        if single != self.spoken_duration(timer.duration_s):
            return t["of"].format(duration=single)
        return t["for"].format(duration=single)

    def announcement(self, timer: Timer) -> str:
        """What is said while ``timer`` rings."""
        return self.phrases["timer"]["done"].format(label=self.timer_label(timer))

    def _timer(self, intent: str, slots: dict[str, Any], timers: Timers) -> str:
        t = self.phrases["timer"]
        seconds = _seconds(slots, "")
        if intent == "HassStartTimer":
            timer = timers.add(seconds, str(slots.get("name", "")))
            return t["set_named" if timer.name else "set"].format(
                name=timer.name, Name=timer.name[:1].upper() + timer.name[1:],
                duration=self.spoken_duration(timer.duration_s))
        if intent == "HassCancelAllTimers":
            gone = [timers.cancel(timer.timer_id) for timer in timers.all()]
            if not gone:
                return str(t["none"])
            return t["cancelled_one" if len(gone) == 1 else "cancelled_all"].format(
                count=len(gone))
        name, start = str(slots.get("name", "")), _seconds(slots, "start_")
        found = timers.find(name, start)
        if not found:
            if not (name or start):
                return t["none"]
            asked = Timer("", name, start or 1.0, 0.0)
            return t["no_such"].format(label=self.timer_label(asked))
        now = timers.clock()
        if intent == "HassTimerStatus":
            if len(found) == 1:
                timer = found[0]
                key = "paused_left" if timer.status == "paused" else "left"
                return t[key].format(label=self.timer_label(timer),
                                     left=self.spoken_duration(timer.remaining_s(now)))
            items = [t["item"].format(label=self.timer_label(timer),
                                      left=self.spoken_duration(timer.remaining_s(now)))
                     for timer in found]
            return t["many_left"].format(count=len(found), items=self._list(items))
        ringing = [timer for timer in found if timer.status == "ringing"]
        if intent == "HassCancelTimer" and ringing and not (name or start):
            found = ringing  # "cancel the timer" while one rings: that one
        if len(found) > 1:
            return t["which"].format(count=len(found), labels=self._list(
                [t["the"].format(label=self.timer_label(timer)) for timer in found]))
        timer = found[0]
        label = self.timer_label(timer)
        if intent == "HassCancelTimer":
            timers.cancel(timer.timer_id, "stop" if timer.status == "ringing" else "cancelled")
            return t["cancelled"].format(label=label)
        if intent == "HassPauseTimer":
            timers.pause(timer.timer_id)
            return t["paused"].format(label=label)
        if intent == "HassUnpauseTimer":
            timers.resume(timer.timer_id)
            return t["resumed"].format(label=label)
        delta = seconds if intent == "HassIncreaseTimer" else -seconds
        timer = timers.change(timer.timer_id, delta)
        return t["changed"].format(label=label,
                                   left=self.spoken_duration(timer.remaining_s(now)))

    def _list(self, items: list[str]) -> str:
        return items[0] if len(items) == 1 else (
            f"{', '.join(items[:-1])} {self.phrases['and']} {items[-1]}")


def _seconds(slots: dict[str, Any], prefix: str) -> float:
    """The duration in ``slots`` (``hours``, ``minutes``, ``seconds`` after ``prefix``)."""
    return sum(float(slots.get(prefix + unit, 0) or 0) * scale
               for unit, scale in (("hours", 3600), ("minutes", 60), ("seconds", 1)))
