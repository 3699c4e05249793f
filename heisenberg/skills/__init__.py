"""Skills: what a desk assistant is asked most, answered exactly and at once, before the LLM."""

from heisenberg.skills.intents import Match, SkillAnswer, Skills
from heisenberg.skills.timers import Timer, Timers

__all__ = ["Match", "SkillAnswer", "Skills", "Timer", "Timers"]
