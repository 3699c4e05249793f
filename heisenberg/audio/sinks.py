"""Where spoken answers go: the speaker, a WAV file, or nowhere.

``play`` returns once the chunk has been *played* (for the speaker and a paced file) so that
the caller knows what was actually said; ``stop`` cuts playback at once (barge-in).
``play_text`` also remembers the words being played, so that the wake word engine can tell
the assistant's own voice (heard back through the microphone) from the user's, whoever
played them: a voice turn, an API answer or ``/api/v1/speak``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from heisenberg.audio.echo import EchoReference
from heisenberg.audio.format import AudioChunk, resample, write_wav
from heisenberg.audio.portaudio import sounddevice
from heisenberg.core.errors import AudioDeviceError

log = logging.getLogger(__name__)


class AudioSink(ABC):
    name = "sink"

    def __init__(self) -> None:
        self.played_ms = 0.0
        """Milliseconds of audio played since creation."""
        self.now_playing: str | None = None
        """The text being played now ('' for a sound without words), None when quiet."""
        self._ended: collections.deque[tuple[str, float]] = collections.deque(maxlen=8)
        self.error: str | None = None
        """Why the device could not play the last time it was asked, None when it could."""

    async def play_text(self, chunk: AudioChunk, text: str) -> None:
        """``play``, remembering that ``text`` is what is being said."""
        self.now_playing = text
        try:
            await self.play(chunk)
        finally:
            self.now_playing = None
            self._ended.append((text, time.monotonic()))

    def hearing(self, echo_s: float = 1.0) -> str:
        """The words a microphone may be hearing from this sink now: what is playing and
        what ended less than ``echo_s`` ago (device latency, room echo, and the wake word
        engine's own delay)."""
        now = time.monotonic()
        said = [text for text, ended in self._ended if now - ended < echo_s]
        return " ".join([*said, self.now_playing or ""]).strip()

    @abstractmethod
    async def play(self, chunk: AudioChunk) -> None:
        """Play ``chunk``; return when it has been played (or accepted, for a fast sink)."""

    async def stop(self) -> None:  # noqa: B027 - a sink that plays instantly has nothing to cut
        """Cut what is playing now (barge-in)."""

    async def ready(self) -> None:  # noqa: B027 - files and the null sink always are
        """Raise ``AudioDeviceError`` if the device cannot play now (checked, not played)."""

    async def close(self) -> None:
        return None


class NullSink(AudioSink):
    name = "null"

    async def play(self, chunk: AudioChunk) -> None:
        self.played_ms += chunk.duration_ms


class WavFileSink(AudioSink):
    """Collects every played chunk and writes one WAV at ``close``.

    ``realtime`` makes ``play`` take as long as the audio lasts, like a speaker, so that a
    barge-in can cut it; otherwise it returns at once.
    """

    def __init__(self, path: str | Path, rate_hz: int = 22050, realtime: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.name = f"wav:{self.path.name}"
        self.rate_hz = rate_hz
        self.realtime = realtime
        self._parts: list[np.ndarray] = []

    async def play(self, chunk: AudioChunk) -> None:
        samples = resample(chunk.array(), chunk.rate_hz, self.rate_hz)
        if not self.realtime:
            self._parts.append(samples)
            self.played_ms += chunk.duration_ms
            return
        # Paced in 20 ms steps: a cancellation keeps only what was "played".
        step = self.rate_hz // 50
        for i in range(0, len(samples), step):
            part = samples[i:i + step]
            await asyncio.sleep(len(part) / self.rate_hz)
            self._parts.append(part)
            self.played_ms += len(part) * 1000 / self.rate_hz

    def samples(self) -> np.ndarray:
        return np.concatenate(self._parts) if self._parts else np.zeros(0, np.int16)

    async def close(self) -> None:
        await asyncio.to_thread(write_wav, self.path, self.samples(), self.rate_hz)


class SpeakerSink(AudioSink):
    """The speaker through sounddevice. Writes happen in a thread in 20 ms blocks so that
    ``stop`` takes effect within one block plus the device latency."""

    def __init__(self, device: str = "", rate_hz: int = 22050) -> None:
        super().__init__()
        self.device: str | int | None = (int(device) if device.isdigit() else device) or None
        self.name = f"speaker:{device or 'default'}"
        self.rate_hz = rate_hz
        self._stream: Any = None
        self._stop = threading.Event()
        self._lock = asyncio.Lock()
        self.reference: EchoReference | None = None
        """Where what is played is recorded, with when it sounds (for echo cancellation)."""
        self._sounds_at: float | None = None

    def _ensure_stream(self) -> Any:
        if self._stream is None:
            try:
                sd = sounddevice()
            except AudioDeviceError as exc:
                self.error = exc.message
                raise
            try:
                self._stream = sd.RawOutputStream(samplerate=self.rate_hz, channels=1,
                                                  dtype="int16", device=self.device,
                                                  latency="low")
                self._stream.start()
            except (sd.PortAudioError, ValueError) as exc:
                self._stream = None
                self.error = f"speaker {self.device or '(default)'} unavailable: {exc}"
                raise AudioDeviceError(self.error) from exc
            self.error = None
        return self._stream

    def _write_blocking(self, samples: np.ndarray) -> float:
        sd = sounddevice()
        stream = self._ensure_stream()
        step = self.rate_hz // 50
        written = 0
        try:
            for i in range(0, len(samples), step):
                if self._stop.is_set():
                    break
                part = samples[i:i + step]
                if self.reference is not None:
                    self._note_played(part, stream)
                stream.write(part.tobytes())
                written += len(part)
        except sd.PortAudioError as exc:
            if not self._stop.is_set():  # an abort() from stop() is expected to end a write
                self._discard_stream()
                self.error = f"speaker failed while playing: {exc}"
                raise AudioDeviceError(self.error) from exc
        return written * 1000 / self.rate_hz

    def _note_played(self, part: np.ndarray, stream: Any) -> None:
        """Tell the echo reference when ``part`` will sound: right after what is queued
        (the stream plays continuously while writes keep up), or, when the queue ran dry,
        one output latency from now."""
        assert self.reference is not None
        now = time.monotonic()
        if self._sounds_at is None or self._sounds_at < now:
            self._sounds_at = now + float(stream.latency)
        self.reference.played(part, self.rate_hz, self._sounds_at)
        self._sounds_at += len(part) / self.rate_hz

    def _discard_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception as exc:  # the device is already gone
                log.warning("speaker: closing the stream failed: %s", exc)

    async def ready(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._ensure_stream)

    async def play(self, chunk: AudioChunk) -> None:
        samples = resample(chunk.array(), chunk.rate_hz, self.rate_hz)
        async with self._lock:
            self._stop.clear()
            self.played_ms += await asyncio.to_thread(self._write_blocking, samples)

    async def stop(self) -> None:
        """Cut playback: abort() drops what the device has buffered instead of letting it
        drain; the next play() opens a fresh stream."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            await asyncio.to_thread(_abort, stream)
        if self.reference is not None:  # what was queued will never sound
            self.reference.cut(time.monotonic())
        self._sounds_at = None
        async with self._lock:  # the writer thread has returned
            await asyncio.to_thread(self._discard_stream)

    async def close(self) -> None:
        await self.stop()


def _abort(stream: Any) -> None:
    try:
        stream.abort()
    except Exception as exc:
        log.warning("speaker: could not abort playback: %s", exc)
