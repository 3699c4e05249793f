"""PromptBuilder: a system prompt, the recent history and the new question, in one format.

String formats (plain, chatml, llama2, gemma) go to llama.cpp's ``/completion``; the
``openai`` format produces chat ``messages`` for ``/v1/chat/completions`` and similar APIs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from heisenberg.core.config import LANGUAGES, PERSONALITIES, PROMPT_FORMATS
from heisenberg.lang import language

PERSONALITY_PROMPTS: dict[str, str] = language("en").personalities
"""The English system prompts (each language has its own: ``heisenberg/lang``)."""
assert all(set(language(code).personalities) == set(PERSONALITIES) for code in LANGUAGES)

#: Strings that end the model's turn in each string format.
STOP_STRINGS: dict[str, list[str]] = {
    "plain": ["User:", "System:"],
    "chatml": ["<|im_end|>", "<|im_start|>"],
    "llama2": ["</s>", "[INST]"],
    "gemma": ["<end_of_turn>", "<start_of_turn>"],
    "openai": [],
}


@dataclass(frozen=True)
class Turn:
    user: str
    assistant: str


@dataclass(frozen=True)
class Prompt:
    """What a backend sends: ``text`` for string formats, ``messages`` for chat APIs."""

    format: str
    system: str
    question: str
    history: tuple[Turn, ...]
    text: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)

    def as_text(self) -> str:
        """The prompt as one string, for text-only APIs: ``text``, or the chat ``messages``
        rendered in the plain format."""
        if self.text:
            return self.text
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in self.messages]
        return "\n\n".join([*lines, "Assistant:"])


def approx_tokens(text: str) -> int:
    """Rough token count (about 4 characters a token for English), never 0 for text."""
    return math.ceil(len(text) / 4)


class PromptBuilder:
    def __init__(self, prompt_format: str = "plain", personality: str = "default",
                 system_prompt: str = "", max_turns: int = 8,
                 max_history_tokens: int = 1024, language_code: str = "en") -> None:
        """``language_code``: the personalities' system prompts are in that language."""
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"unknown prompt format {prompt_format!r}")
        prompts = language(language_code).personalities
        if personality not in prompts:
            raise ValueError(f"unknown personality {personality!r}")
        self.format = prompt_format
        self.system = system_prompt or prompts[personality]
        self.max_turns = max_turns
        self.max_history_tokens = max_history_tokens

    def select_history(self, history: Sequence[Turn]) -> tuple[Turn, ...]:
        """The most recent turns that fit both ``max_turns`` and the token budget."""
        kept: list[Turn] = []
        budget = self.max_history_tokens
        for turn in reversed(history[-self.max_turns:] if self.max_turns else []):
            cost = approx_tokens(turn.user) + approx_tokens(turn.assistant)
            if cost > budget:
                break
            budget -= cost
            kept.append(turn)
        return tuple(reversed(kept))

    def build(self, question: str | Sequence[Turn],
              history: Sequence[Turn] | str = (), context: str = "") -> Prompt:
        """The prompt for ``question`` after ``history``. Seed 004's order,
        ``build(history, current_query)``, is accepted too. ``context``: what the model
        should know besides (the last scene), added to the system prompt."""
        if not isinstance(question, str):
            question, history = history, question
        if not isinstance(question, str) or isinstance(history, str):
            raise TypeError("build(question, history) needs one question (str) and a "
                            "sequence of turns")
        turns = self.select_history(history)
        system = f"{self.system}\n\n{context}" if context else self.system
        render = {"plain": _plain, "chatml": _chatml, "llama2": _llama2, "gemma": _gemma}
        if self.format == "openai":
            return Prompt(self.format, system, question, turns,
                          messages=_messages(system, turns, question))
        text = render[self.format](system, turns, question)
        return Prompt(self.format, system, question, turns, text=text,
                      messages=_messages(system, turns, question),
                      stop=list(STOP_STRINGS[self.format]))


def _messages(system: str, turns: Sequence[Turn], question: str) -> list[dict[str, str]]:
    out = [{"role": "system", "content": system}] if system else []
    for turn in turns:
        out += [{"role": "user", "content": turn.user},
                {"role": "assistant", "content": turn.assistant}]
    return out + [{"role": "user", "content": question}]


def _plain(system: str, turns: Sequence[Turn], question: str) -> str:
    parts = [f"System: {system}"] if system else []
    for turn in turns:
        parts += [f"User: {turn.user}", f"Assistant: {turn.assistant}"]
    parts += [f"User: {question}", "Assistant:"]
    return "\n\n".join(parts)


def _chatml(system: str, turns: Sequence[Turn], question: str) -> str:
    def block(role: str, text: str) -> str:
        return f"<|im_start|>{role}\n{text}<|im_end|>\n"

    out = block("system", system) if system else ""
    for turn in turns:
        out += block("user", turn.user) + block("assistant", turn.assistant)
    return out + block("user", question) + "<|im_start|>assistant\n"


def _llama2(system: str, turns: Sequence[Turn], question: str) -> str:
    sys_block = f"<<SYS>>\n{system}\n<</SYS>>\n\n" if system else ""
    out = ""
    for i, turn in enumerate(turns):
        prefix = sys_block if i == 0 else ""
        out += f"<s>[INST] {prefix}{turn.user} [/INST] {turn.assistant} </s>"
    prefix = sys_block if not turns else ""
    return out + f"<s>[INST] {prefix}{question} [/INST]"


def _gemma(system: str, turns: Sequence[Turn], question: str) -> str:
    # Gemma has no system role: the system text opens the first user turn.
    def user(text: str, first: bool) -> str:
        body = f"{system}\n\n{text}" if first and system else text
        return f"<start_of_turn>user\n{body}<end_of_turn>\n"

    out = ""
    for i, turn in enumerate(turns):
        out += user(turn.user, i == 0)
        out += f"<start_of_turn>model\n{turn.assistant}<end_of_turn>\n"
    return out + user(question, not turns) + "<start_of_turn>model\n"
