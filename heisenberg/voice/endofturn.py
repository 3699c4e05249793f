"""Has the speaker finished their sentence? A rule on the early transcript.

At a short pause, whisper's transcript of the words so far shows an unfinished sentence in
three ways: whisper itself marks it ("...", "-", "," at the end), the last word is one that
an English sentence does not end on (an article, a preposition, a conjunction, a possessive,
a subject pronoun, a question word), or it is a lone subordinate clause ("If it rains.").
Missing final punctuation alone is no sign: whisper often leaves it out of finished ones.
Then the end-of-speech detector waits longer (``stt.pause_silence_ms``) instead of ending the
utterance after ``stt.end_silence_ms``.

Why a rule and not Smart Turn v3.2 (the audio model inside the pipecat-ai wheel), measured by
bench/turn_models.py on 84 sentences in voices never tuned on, each whole and cut after a
random word: the rule held 35 % of the cut ones and ended 100 % of the finished ones; Smart
Turn held 46 % of the cut ones but also 18 % of the finished ones (each then waits the long
pause), at ~150 ms a call here, from an 8.7 MB model published only inside a wheel with 25
dependencies. The rule costs nothing and uses the transcript made anyway for the early answer.
"""

from __future__ import annotations

import re


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NOT_LAST = _words("""
a an the my your his her its our their this these those some any every no
of for to with from about into onto at by as than between through in
and or but because so if when while although though unless whether nor
i we they he she i'm you're we're they're let's
what which who whose where how why
very more most really just um uh er
""")
"""Words an English sentence does not end on. Left out on purpose: object pronouns (you,
it, them: "ask what you can do for you"), particles that end commands (on, off, up, over:
"turn the lights on"), and verbs, auxiliaries too ("tell me what colour the car is")."""

_SUBORDINATE = _words("if when before after because while although though unless once since")
"""A statement that starts with one of these and has no comma is only the first half
("When my friends come over tonight.")."""

_MARKED_UNFINISHED = re.compile(r"(\.\.\.|…|[-–—,;:])$")


def unfinished(text: str) -> bool:
    """True when ``text`` (a transcript of what was said so far) reads as a sentence that is
    not finished yet. An empty transcript is not: there is nothing to wait for."""
    text = text.strip().strip('"\'»”')
    if not text:
        return False
    if _MARKED_UNFINISHED.search(text):
        return True
    words = re.findall(r"[a-z']+", text.lower())
    if not words:
        return False
    last = words[-1]
    return last in _NOT_LAST or (words[0] in _SUBORDINATE and "," not in text
                                 and not text.endswith("?"))
