"""What Heisenberg says and hears, per language: one module per language (``en.py``,
``fr.py``), each a ``LANGUAGE``. Another language is another such file (and its speech
models): no code changes.

    words = language("fr")
    words.sorry                      # "Désolé, quelque chose s'est mal passé."
"""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass
from typing import Any

from heisenberg.core.config import LANGUAGES
from heisenberg.core.errors import ConfigError


@dataclass(frozen=True)
class Language:
    code: str
    """ISO 639-1 (``fr``): whisper's language, Home Assistant's intents."""
    personalities: dict[str, str]
    """The system prompt of each ``llm.personality``."""
    scene: str
    """Added to the system prompt after a described scene (``{description}``)."""
    sorry: str
    """Said when a spoken turn fails."""
    no_answer: str
    """Said when the model gave nothing speakable."""
    link: str
    """Said for a URL in an answer."""
    dismissals: frozenset[str]
    """What ends a turn without a question ("stop", "never mind"), lower case."""
    polite: frozenset[str]
    """Words around a dismissal that do not change it ("please", "thanks")."""
    skills: dict[str, Any]
    """The skills' answers, units, extra sentences and rewrites (``skills/intents.py``)."""
    not_last: frozenset[str]
    """Words a sentence does not end on (``voice/endofturn.py``): heard at a pause, the
    speaker is not done."""
    may_end: frozenset[str]
    """Words of ``not_last`` that do end a sentence that whisper closed with ``?``, ``!`` or
    ``.``: a demonstrative or a pronoun ("What is this?", "Where are they?"), "more"."""
    stranded: frozenset[str]
    """Prepositions that end a closed question that begins with one of ``strands_after``
    ("What is it made of?", "Where is this bottle from?"), not other sentences ("Set an
    alarm for?" is whisper closing a pause)."""
    strands_after: frozenset[str]
    """Question words that leave a preposition at the end of their question."""
    short_end: frozenset[str]
    """Question words that end a closed sentence of at most three words ("Why?", "Tell me
    why.", "Tu t'appelles comment ?"), not a longer one ("a dragon who?")."""
    subordinate: frozenset[str]
    """A statement that starts with one of these and has no comma is only its first half."""
    phrase_starts: frozenset[str] = frozenset()
    """Words an answer's first spoken piece may be cut before, once it has a few words
    (``tts.first_phrase``): a verb after its subject, a conjunction, a relative pronoun
    ("The capital of France | is Paris.")."""
    phrase_not_after: frozenset[str] = frozenset()
    """Words that piece does not end on besides ``not_last``: pronouns ("I think that you |
    are" is not a phrase)."""
    abbreviations: frozenset[str] = frozenset()
    """Words whose period ends no sentence ("Dr. Smith"), lower case without the period: a
    spoken answer's sentence is cut as its mark arrives, except after these."""


def words(text: str) -> frozenset[str]:
    """The words of ``text`` (split on white space), for the word sets above."""
    return frozenset(text.split())


@functools.cache
def language(code: str) -> Language:
    """The words of ``code``; a ``ConfigError`` naming the known ones otherwise."""
    if code not in LANGUAGES:
        raise ConfigError(f"language: {code!r} is not one of {', '.join(LANGUAGES)}")
    found: Language = importlib.import_module(f"heisenberg.lang.{code}").LANGUAGE
    return found


def words_in(text: str) -> list[str]:
    """The words of a transcript, lower case, without punctuation ("It’s" -> "it's")."""
    return re.findall(r"[\w']+", text.lower().replace("’", "'"))
