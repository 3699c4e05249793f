"""Has the speaker finished their sentence? A rule on the early transcript.

At a short pause, whisper's transcript of the words so far shows an unfinished sentence in
three ways: whisper itself marks it ("...", "-", "," at the end), the last word is one that
a sentence does not end on (an article, a preposition, a conjunction, a possessive, a
subject pronoun, a question word), or it is a lone subordinate clause ("If it rains."). The
words are per language (``heisenberg/lang``).
Missing final punctuation alone is no sign: whisper often leaves it out of finished ones.
Then the end-of-speech detector waits longer (``stt.pause_silence_ms``) instead of ending the
utterance after ``stt.end_silence_ms``.
But some of those last words do end a sentence, and end the questions a camera is asked most.
When whisper closed the sentence (``?``, ``!``, ``.``), it is finished if its last word is a
demonstrative, a pronoun or "more" (``may_end``: "What is this?", "Tell me more."), a
preposition left at the end of a question that begins with a question word (``stranded``
after ``strands_after``: "What is it made of?", "Where is this bottle from?"; not "Set an
alarm for?", which is whisper closing a pause), or a question word ending three words at
most (``short_end``: "Tell me why."; not "a dragon who?"). Measured on the dev voices
(bench/turn_models.py): finished sentences that end so were ended at the short pause 8 % of
the time, 94 % with this; sentences cut after a random word were held 28 % of the time, 21 %
with it (whisper closes some cut ones too: "Where is this?" of "Where is this bottle
from?"; the speech that follows then continues the question, ``stt.resume_window_ms``). On
the test voices: 7 % → 94 % and 27 → 20 %. A first version that took any of these words
at the end of any closed sentence ended 23 of 72 questions paused after "of", "for", "to",
"who" or "in" in their pause (bench/endpointing.py, test voices), against 5 before; all
were continued, but the user hears the answer to the half start.

Why a rule and not Smart Turn v3.2 (the audio model inside the pipecat-ai wheel), measured by
bench/turn_models.py on 24 sentences in nine voices never tuned on, each whole and cut after a
random word: the rule held 30 % of the cut ones and ended 99 % of the finished ones; Smart
Turn held 41 % of the cut ones but also 20 % of the finished ones (each then waits the long
pause), at ~43 ms a call here, from an 8.7 MB model published only inside a wheel with 25
dependencies. The rule costs nothing and uses the transcript made anyway for the early answer.
"""

from __future__ import annotations

import re

from heisenberg.lang import language, words_in

SHORT_WORDS = 3
"""A closed sentence this short may end on a question word ("Tell me why.")."""
_MARKED_UNFINISHED = re.compile(r"(\.\.\.|…|[-–—,;:])$")


def unfinished(text: str, language_code: str = "en") -> bool:
    """True when ``text`` (a transcript of what was said so far) reads as a sentence that is
    not finished yet, in ``language_code`` (its words: ``heisenberg/lang``). An empty
    transcript is not: there is nothing to wait for."""
    words_of = language(language_code)
    text = text.strip().strip('"\'»”')
    if not text:
        return False
    if _MARKED_UNFINISHED.search(text):
        return True
    words = words_in(text)
    if not words:
        return False
    last = words[-1]
    if text[-1] in "?!." and (
            last in words_of.may_end
            or (last in words_of.stranded and words[0] in words_of.strands_after)
            or (last in words_of.short_end and len(words) <= SHORT_WORDS)):
        return False
    return last in words_of.not_last or (words[0] in words_of.subordinate and "," not in text
                                         and not text.rstrip().endswith("?"))
