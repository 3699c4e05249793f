"""Skills: what a desk assistant is asked most, answered exactly and at once, before the LLM."""

from heisenberg.skills.intents import SkillAnswer, Skills

__all__ = ["SkillAnswer", "Skills"]
