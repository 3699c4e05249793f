"""Wake word detection with openWakeWord's models (package ``pyopen-wakeword``).

``process`` is synchronous and CPU-bound (two small TFLite models per 80 ms chunk): the
orchestrator runs it in a worker thread. Detection needs ``patience`` consecutive frames above
the threshold. Measured by ``bench/wakeword.py`` on varied Piper speech: a real "hey jarvis"
gives 5-9 such frames (a pause after "hey" gives the fewest), near misses such as "hey
jervis" or "jarvis" alone up to 6, and ordinary speech at most 1.
"""

from __future__ import annotations

import collections
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from heisenberg.audio.format import AudioChunk
from heisenberg.core.config import WakeWordConfig
from heisenberg.core.errors import ModelError


@dataclass(frozen=True)
class Detection:
    model: str
    score: float
    """Highest score of the frames that triggered, 0..1."""
    audio_ms: int
    """Audio time of the end of the chunk that triggered."""


class WakeWordEngine(ABC):
    @abstractmethod
    def process(self, chunk: AudioChunk, threshold: float | None = None) -> Detection | None:
        """Feed one chunk; a ``Detection`` when the wake word was just heard.

        ``threshold`` overrides the configured one for this chunk (raised while speaking).
        """

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


class OpenWakeWordEngine(WakeWordEngine):
    def __init__(self, config: WakeWordConfig) -> None:
        from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures

        self.config = config
        try:
            if config.model in BUILTIN_MODELS:
                self._model = OpenWakeWord.from_builtin(Model(config.model))
            else:
                path = Path(config.model).expanduser()
                if not path.is_file():
                    raise ModelError(
                        f"wakeword.model: {config.model!r} is neither a built-in model "
                        f"({', '.join(BUILTIN_MODELS)}) nor an existing .tflite file")
                probe_model(path)
                self._model = OpenWakeWord.from_model(path)
            self._features = OpenWakeWordFeatures.from_builtin()
        except (OSError, RuntimeError) as exc:
            raise ModelError(f"wake word model {config.model!r} failed to load: {exc}") from exc
        self.name = config.model if config.model in BUILTIN_MODELS else Path(config.model).stem
        self._streak = 0
        self._best = 0.0
        self._quiet_until_ms = -1
        self._last_ms = -1
        self.last_scores: list[float] = []

    def process(self, chunk: AudioChunk, threshold: float | None = None) -> Detection | None:
        limit = self.config.threshold if threshold is None else threshold
        end_ms = chunk.timestamp_ms + int(chunk.duration_ms)
        if chunk.timestamp_ms < self._last_ms:  # a new stream: its audio clock restarted
            self._quiet_until_ms = -1
        self._last_ms = chunk.timestamp_ms
        scores = [score for features in self._features.process_streaming(chunk.pcm)
                  for score in self._model.process_streaming(features)]
        self.last_scores = scores
        detection = None
        for score in scores:
            if score >= limit:
                self._streak += 1
                self._best = max(self._best, score)
            else:
                self._streak, self._best = 0, 0.0
            if self._streak >= self.config.patience and end_ms >= self._quiet_until_ms:
                detection = Detection(self.name, self._best, end_ms)
                self._quiet_until_ms = end_ms + int(self.config.refractory_s * 1000)
                self._streak, self._best = 0, 0.0
        return detection

    def close(self) -> None:
        self._model.close()
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

    def close(self) -> None:
        self.inner.close()
