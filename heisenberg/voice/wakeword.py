"""Wake word detection with openWakeWord's models (package ``pyopen-wakeword``).

``process`` is synchronous and CPU-bound (the shared mel spectrogram and speech embedding,
then one small TFLite model per wake word, per 80 ms chunk): the orchestrator runs it in a
worker thread. Several models can listen at once (``wakeword.model`` as a list).

A model with a verifier (``voice/verifier.py``: the bundled one for hey_jarvis, or one made
by ``heisenberg enroll``) decides in stages: a frame scoring ``candidate_threshold`` makes a
candidate, and the verifier confirms it on the same embeddings; a candidate it is unsure of
goes to stage 3 (when the engine has the daemon's whisper): the acoustic check (a small
classifier on whisper's encoder, ``verifiers/<model>.whisper.npz``) and, where it is not sure,
the transcript check, which confirm it when the last 2 s of audio hold the wake phrase. A candidate
never confirmed comes back as a ``Detection`` with ``confirmed=False``. A model without a
verifier needs ``patience`` frames in a row at ``threshold``. bench/wakeword.py measures
them on voices and recordings none was tuned on.
"""

from __future__ import annotations

import collections
import logging
import re
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from heisenberg.audio.format import RATE_HZ, AudioChunk
from heisenberg.core.config import WakeWordConfig
from heisenberg.core.errors import ModelError, STTError
from heisenberg.lang import words_in
from heisenberg.voice.verifier import (
    WINDOW_FRAMES,
    Verifier,
    bundled_phrase_check,
    find_verifier,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    model: str
    score: float
    """Highest model score of the candidate's frames, 0..1."""
    audio_ms: int
    """Audio time of the end of the chunk on which it was decided."""
    confirmed: bool = True
    """False: a candidate that the verifier turned down (it starts nothing)."""
    verdict: float | None = None
    """The verifier's probability (best one for a rejected candidate); None without one."""
    transcript: str | None = None
    """What the transcript check heard (stage 3), when it was asked; None otherwise."""
    check: float | None = None
    """The acoustic check's probability (stage 3), when it was asked; None otherwise."""
    check_ms: float = 0.0
    """Wall-clock milliseconds stage 3 took (0 when not asked)."""
    late_ms: int = 0
    """Confirmed by stage 3: the length of the audio it heard the wake phrase
    in (``CHECK_AUDIO_S``, less at the start of a stream). Decided this late, the question's
    audio reaches back over all of it, so that it holds the whole wake phrase (which the
    voice loop strips from the transcript), not the tail of it; 0 otherwise."""
    stage: str = "score"
    """What confirmed it: ``score`` (the model's score, no verifier), ``verifier``, or, for
    a candidate the verifier was unsure of, ``acoustic`` (whisper's encoder) or
    ``transcript`` (whisper's words)."""


class WakeWordEngine(ABC):
    @abstractmethod
    def process(self, chunk: AudioChunk, threshold: float | None = None) -> Detection | None:
        """Feed one chunk; a ``Detection`` when the wake word was just heard.

        ``threshold`` overrides the configured one for this chunk (raised while speaking).
        """

    @property
    def names(self) -> list[str]:
        """The wake words it listens for (model names)."""
        return [str(getattr(self, "name", ""))]

    def close(self) -> None:
        return None


BUILTIN_MODELS = ("alexa", "hey_jarvis", "hey_mycroft", "hey_rhasspy", "okay_nabu")

# Loads a model and scores 3 s of silence, as the engine will: run in a child process.
_PROBE = """
import sys
from pathlib import Path
from pyopen_wakeword import OpenWakeWord, OpenWakeWordFeatures
model = OpenWakeWord.from_model(Path(sys.argv[1]))
features = OpenWakeWordFeatures.from_builtin()
pcm = bytes(16000 * 2 * 3)
if not [s for f in features.process_streaming(pcm) for s in model.process_streaming(f)]:
    sys.exit("the model gave no score")
"""


def probe_model(path: Path, timeout_s: float = 60.0) -> None:
    """Try a custom wake word model in a child process before the daemon loads it.

    TensorFlow Lite does not fail cleanly on a file that is not an openWakeWord model: an
    invalid file, or a valid model of another shape, crashes the process (segmentation
    fault) at load or at the first chunk. That must happen to a child, not to the daemon.
    """
    try:
        child = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True,
                               text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ModelError(f"wakeword.model: {str(path)!r} did not load within "
                         f"{timeout_s:.0f} s") from None
    if child.returncode != 0:
        lines = [line.strip() for line in child.stderr.splitlines() if line.strip()]
        said = "; ".join(line.removeprefix("ERROR: ") for line in lines[-2:])
        how = f"signal {-child.returncode}" if child.returncode < 0 else \
            f"exit code {child.returncode}"
        raise ModelError(f"wakeword.model: {str(path)!r} is not a usable openWakeWord .tflite "
                         f"model (TensorFlow Lite failed on it, {how}: {said or 'no message'})")


CHECK_DELAY_MS = 160
"""Stage 3 waits this long after the verifier's probability first
reaches ``check_threshold``, for the phrase to end (and for the verifier to confirm it on its
own, which most often happens by then)."""
CHECK_AUDIO_S = 2.0
"""The audio stage 3 hears: the last 2 s, which hold the wake phrase."""


def wake_word_text(model_name: str) -> str:
    """The distinctive word of a wake word model's name ("hey_jarvis" -> "jarvis")."""
    words = [w for w in model_name.lower().replace("-", "_").split("_")
             if w not in ("hey", "okay", "ok", "v0", "v1", "v2", "")]
    return words[-1] if words else ""


_GREETING = "hey|hi|okay|ok"
"""The words said before a wake word ("hey jarvis")."""


def question_in(raw: str, *wake_words: str, went_on: bool = False) -> str:
    """The question in a transcript: without the wake phrase; for a question that went on
    (``went_on``), what follows the wake phrase if it was said again."""
    if went_on:
        raw = after_wake_word(raw, *wake_words)
    return strip_wake_word(raw, *wake_words)


def after_wake_word(text: str, *wake_words: str) -> str:
    """What follows the last "hey jarvis" inside ``text`` (any of ``wake_words``, after
    "hey", "hi" or "okay"), else ``text``: a question that went on
    (``stt.resume_window_ms``) may hold the wake phrase said again to interrupt the answer
    that had just begun ("What time is it? Hey Jarvis, stop." -> "stop.")."""
    for word in filter(None, wake_words):
        parts = re.split(rf"\b(?:{_GREETING})\W+{re.escape(word)}\b\W*", text,
                         flags=re.IGNORECASE)
        if len(parts) > 1:
            return parts[-1].strip()
    return text


def strip_wake_word(text: str, *wake_words: str) -> str:
    """Drop a leading "hey jarvis," that the pre-roll brought into the transcript (any of
    ``wake_words``: several models may listen at once), also as whisper mishears the "hey"
    ("I hate Jarvis, ...", "A Jarvis, ...": up to two words, when a mark follows the wake
    word; a question confirmed by the transcript check holds all of the phrase). The question
    starts with a capital either way: whisper writes "how many..." when the pre-roll begins
    inside the wake word."""
    text = text.strip()
    for word in filter(None, wake_words):
        pattern = (rf"^\W*((({_GREETING})\W+)?{re.escape(word)}\b"
                   rf"|(\w+\W+){{1,2}}?{re.escape(word)}\b(?=\s*[,.!?]\s*\w))\W*")
        stripped = re.sub(pattern, "", text, flags=re.IGNORECASE).strip()
        if stripped != text:
            text = stripped
            break
    return text[:1].upper() + text[1:]


def phrase_heard(model_name: str, text: str) -> bool:
    """Whether ``text`` holds the wake word of ``model_name``: its distinctive word ("jarvis"
    for hey_jarvis), after another word when the phrase has two ("Hey Jarvis", "Okay,
    Jarvis" and whisper's "A Jarvis" are heard; "Jarvis is a name" is not, nor whisper's
    loop on a bare "Jarvis.": "Jarvis Jarvis Jarvis")."""
    word = wake_word_text(model_name)
    words = words_in(text)
    if not word or word not in words:
        return False
    lead = word != model_name.lower()  # a phrase of two words or more
    return not lead or words.index(word) > 0


@dataclass
class PhraseCheck:
    """Stage 3's means: the daemon's whisper. ``features``: its encoder's blocks of the
    last ``CHECK_AUDIO_S`` (``WhisperSTT.phrase_features``), for the acoustic check of the
    models that have one; ``transcribe``: its words, for the transcript check (None: off)."""

    features: Callable[[np.ndarray], np.ndarray] | None = None
    transcribe: Callable[[np.ndarray], str] | None = None


@dataclass(frozen=True)
class _Heard:
    """What stage 3 made of the audio: its length, the acoustic check's probability and the
    transcript, each None when not asked, and whether the wake phrase is in it."""

    audio_ms: int
    check: float | None
    transcript: str | None
    stage: str | None
    """``acoustic`` or ``transcript``: what heard the phrase; None: nothing did."""


class _Listener:
    """One model's detection state: the candidate rule (stage 1), its verifier (stage 2) and
    the check of the candidates the verifier is unsure of (stage 3: ``acoustic``, whisper's
    encoder with the model's classifier, then, if that is unsure, whisper's words)."""

    def __init__(self, name: str, model: Any, verifier: Verifier | None,
                 config: WakeWordConfig, acoustic: Verifier | None = None) -> None:
        self.name = name
        self.model = model
        self.verifier = verifier
        self.acoustic = acoustic
        """Stage 3's classifier on whisper's encoder (``verifiers/<model>.whisper.npz``)."""
        self.config = config
        self.streak = 0
        self.best = 0.0
        self.confirmed = False
        self.best_verdict = 0.0
        self.quiet_until_ms = -1
        self.check_due_ms = -1
        self.heard: _Heard | None = None
        self.check_ms = 0.0

    def reset(self) -> None:
        self.quiet_until_ms = -1

    def frame(self, score: float, raised: float | None, end_ms: int,
              check: Callable[[], np.ndarray] | None = None,
              means: PhraseCheck | None = None) -> Detection | None:
        """One 80 ms frame's score; the window it was computed on is ``model.embeddings``.
        ``raised``: the threshold while the assistant's own voice plays; ``check``: the last
        ``CHECK_AUDIO_S`` of audio, for stage 3 with ``means``."""
        cfg = self.config
        limit = cfg.candidate_threshold if self.verifier else cfg.threshold
        if raised is not None:
            limit = max(limit, raised)
            check = None  # while its own voice plays, whisper would mostly hear that
        patience = 1 if self.verifier else cfg.patience
        if score < limit:
            if not self.confirmed and self._checked(0.0, 0.0, end_ms, check, means,
                                                    ending=True):
                return self._confirm(self.best_verdict, end_ms)
            rejected = None
            if self.streak >= patience and not self.confirmed and self.verifier:
                heard = self.heard
                rejected = Detection(self.name, self.best, end_ms, confirmed=False,
                                     verdict=self.best_verdict,
                                     transcript=heard.transcript if heard else None,
                                     check=heard.check if heard else None,
                                     check_ms=self.check_ms)
            self.streak, self.best, self.confirmed, self.best_verdict = 0, 0.0, False, 0.0
            self.check_due_ms, self.heard, self.check_ms = -1, None, 0.0
            return rejected
        self.streak += 1
        self.best = max(self.best, score)
        if self.streak < patience or self.confirmed or end_ms < self.quiet_until_ms:
            return None
        verdict = None
        if self.verifier is not None:
            verdict = self.verifier.score(self.model.embeddings[-WINDOW_FRAMES:], score)
            self.best_verdict = max(self.best_verdict, verdict)
        if self.verifier is not None and verdict is not None \
                and verdict < self.verifier.threshold:
            if not self._checked(verdict, score, end_ms, check, means):
                return None
            return self._confirm(verdict, end_ms)
        return self._confirm(verdict, end_ms, "verifier" if self.verifier else "score")

    def _confirm(self, verdict: float | None, end_ms: int, stage: str = "") -> Detection:
        """``stage``: what confirmed it; "" for stage 3 (what it heard says which)."""
        self.confirmed = True
        self.quiet_until_ms = end_ms + int(self.config.refractory_s * 1000)
        heard = self.heard
        if not stage:
            assert heard is not None and heard.stage is not None
            stage = heard.stage
        return Detection(self.name, self.best, end_ms, verdict=verdict,
                         transcript=heard.transcript if heard else None,
                         check=heard.check if heard else None, check_ms=self.check_ms,
                         stage=stage, late_ms=heard.audio_ms if heard and heard.stage else 0)

    def _checked(self, verdict: float, score: float, end_ms: int,
                 check: Callable[[], np.ndarray] | None, means: PhraseCheck | None,
                 ending: bool = False) -> bool:
        """Stage 3: a candidate the verifier is unsure of (its probability reached
        ``check_threshold`` but not its threshold, or the model's score reached ``threshold``,
        which alone would have been a detection), ``CHECK_DELAY_MS`` later or when it ends if
        that is sooner, is confirmed when the last ``CHECK_AUDIO_S`` of audio hold the wake
        phrase: by the acoustic check (this model's classifier on whisper's encoder) when it
        has one, else, or where that check stays under its threshold, by whisper's words
        (``check_words``); asked once per candidate."""
        cfg = self.config
        if check is None or means is None or not cfg.check_threshold or self.heard is not None:
            return False
        if means.transcribe is None and (self.acoustic is None or means.features is None):
            return False
        if self.check_due_ms < 0:
            if ending or (verdict < cfg.check_threshold and score < cfg.threshold):
                return False
            self.check_due_ms = end_ms + CHECK_DELAY_MS
        if end_ms < self.check_due_ms and not ending:
            return False
        started = time.perf_counter()
        self.heard = self._hear(check(), means)
        self.check_ms = (time.perf_counter() - started) * 1000
        return self.heard.stage is not None

    def _hear(self, audio: np.ndarray, means: PhraseCheck) -> _Heard:
        audio_ms = len(audio) * 1000 // RATE_HZ
        probability = None
        if self.acoustic is not None and means.features is not None:
            try:
                probability = float(self.acoustic.probabilities(means.features(audio)[None])[0])
            except STTError as exc:
                log.warning("wake word acoustic check failed: %s", exc)
            if probability is not None and probability >= self.acoustic.threshold:
                return _Heard(audio_ms, probability, None, "acoustic")
        if means.transcribe is None:
            return _Heard(audio_ms, probability, None, None)
        try:
            text = means.transcribe(audio)
        except STTError as exc:
            log.warning("wake word transcript check failed: %s", exc)
            text = ""
        return _Heard(audio_ms, probability, text,
                      "transcript" if phrase_heard(self.name, text) else None)


class OpenWakeWordEngine(WakeWordEngine):
    """openWakeWord: shared features (mel spectrogram + speech embedding), then one small
    model per wake word, each with its own detection state and verifier."""

    def __init__(self, config: WakeWordConfig, verifiers: dict[str, Verifier] | None = None
                 ) -> None:
        """``verifiers``: model name → verifier; default: the user's enrolled one beside
        the config, else the bundled one, when ``wakeword.verify`` is on."""
        from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures

        self.config = config
        self._listeners: list[_Listener] = []
        try:
            for spec in config.models:
                if spec in BUILTIN_MODELS:
                    model = OpenWakeWord.from_builtin(Model(spec))
                    name = spec
                else:
                    path = Path(spec).expanduser()
                    if not path.is_file():
                        raise ModelError(
                            f"wakeword.model: {spec!r} is neither a built-in model "
                            f"({', '.join(BUILTIN_MODELS)}) nor an existing .tflite file")
                    probe_model(path)
                    model = OpenWakeWord.from_model(path)
                    name = path.stem
                if verifiers is not None:
                    verifier = verifiers.get(name)
                elif config.verify:
                    verifier = find_verifier(name, config.verifier_dir,
                                             config.verifier_threshold or None)
                else:
                    verifier = None
                acoustic = (bundled_phrase_check(name)
                            if verifier is not None and config.acoustic_check else None)
                self._listeners.append(_Listener(name, model, verifier, config, acoustic))
            self._features = OpenWakeWordFeatures.from_builtin()
        except (OSError, RuntimeError) as exc:
            self.close()
            raise ModelError(f"wake word model {config.model!r} failed to load: {exc}") from exc
        except ModelError:
            self.close()
            raise
        self.name = self._listeners[0].name
        self._last_ms = -1
        self.phrase_check: PhraseCheck | None = None
        """Stage 3's whisper (the daemon's speech-to-text; set after loading:
        ``voice/stt.py``'s ``add_transcript_check``)."""
        self._audio: collections.deque[np.ndarray] = collections.deque()
        self._audio_samples = 0
        self.last_scores: list[float] = []
        """The first model's scores of the last chunk, one per 80 ms frame."""

    @property
    def names(self) -> list[str]:
        return [listener.name for listener in self._listeners]

    @property
    def verifiers(self) -> dict[str, Verifier | None]:
        return {listener.name: listener.verifier for listener in self._listeners}

    def process(self, chunk: AudioChunk, threshold: float | None = None) -> Detection | None:
        end_ms = chunk.timestamp_ms + int(chunk.duration_ms)
        if chunk.timestamp_ms < self._last_ms:  # a new stream: its audio clock restarted
            for listener in self._listeners:
                listener.reset()
            self._audio.clear()
            self._audio_samples = 0
        self._last_ms = chunk.timestamp_ms
        self._keep(chunk)
        means = self.phrase_check
        check = self._recent_audio if means is not None else None
        confirmed: Detection | None = None
        rejected: Detection | None = None
        embeddings = list(self._features.process_streaming(chunk.pcm))  # shared by all
        for i, listener in enumerate(self._listeners):
            scores = []
            for features in embeddings:
                for score in listener.model.process_streaming(features):
                    scores.append(score)
                    found = listener.frame(score, threshold, end_ms, check, means)
                    if found is not None and found.confirmed:
                        confirmed = confirmed or found
                    elif found is not None:
                        rejected = rejected or found
            if i == 0:
                self.last_scores = scores
        return confirmed or rejected

    def _keep(self, chunk: AudioChunk) -> None:
        """The last ``CHECK_AUDIO_S`` of audio, for stage 3."""
        if self.phrase_check is None:
            return
        samples = chunk.array()
        self._audio.append(samples)
        self._audio_samples += len(samples)
        keep = int(CHECK_AUDIO_S * RATE_HZ)
        while self._audio_samples - len(self._audio[0]) >= keep:
            self._audio_samples -= len(self._audio.popleft())

    def _recent_audio(self) -> np.ndarray:
        return np.concatenate(list(self._audio))[-int(CHECK_AUDIO_S * RATE_HZ):]

    def drop_phrase_checks(self, width: int) -> list[str]:
        """Turn off the acoustic check of the models whose classifier does not take
        ``width`` values (another whisper than the one it was trained on); their names."""
        off = []
        for listener in self._listeners:
            if listener.acoustic is not None and listener.acoustic.mean.shape != (width,):
                listener.acoustic = None
                off.append(listener.name)
        return off

    def close(self) -> None:
        for listener in self._listeners:
            listener.model.close()
        if hasattr(self, "_features"):
            self._features.close()


class VadGatedWakeWord(WakeWordEngine):
    """Runs the wake word models only around speech, so that a quiet room costs almost no CPU.

    openWakeWord costs ~16-26 ms of CPU per 80 ms chunk here (20-33 % of a core); webrtcvad
    costs ~0.02 ms. Chunks heard while the room is quiet are kept (``context_chunks``, about
    2 s, the models' receptive field) and fed to the models first when speech starts, so that
    the models see exactly the audio they would have seen; they keep running until
    ``hangover_ms`` after the last speech.
    """

    def __init__(self, inner: WakeWordEngine, is_speech: Callable[[AudioChunk], bool],
                 context_chunks: int = 25, hangover_ms: int = 2000) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "")
        self._is_speech = is_speech
        self._skipped: collections.deque[AudioChunk] = collections.deque(maxlen=context_chunks)
        self._hangover_ms = hangover_ms
        self._active_until_ms = -1
        self._last_ms = -1
        self.chunks_processed = 0

    def process(self, chunk: AudioChunk, threshold: float | None = None) -> Detection | None:
        if chunk.timestamp_ms < self._last_ms:  # a new stream (file, reopened device)
            self._active_until_ms = -1
            self._skipped.clear()
        self._last_ms = chunk.timestamp_ms
        end_ms = chunk.timestamp_ms + int(chunk.duration_ms)
        if self._is_speech(chunk):
            self._active_until_ms = end_ms + self._hangover_ms
        if end_ms > self._active_until_ms:
            self._skipped.append(chunk)
            return None
        detection = None
        while self._skipped:
            detection = self.inner.process(self._skipped.popleft(), threshold) or detection
            self.chunks_processed += 1
        self.chunks_processed += 1
        return self.inner.process(chunk, threshold) or detection

    @property
    def names(self) -> list[str]:
        return self.inner.names

    def close(self) -> None:
        self.inner.close()
