"""Where spoken answers go: the speaker, a WAV file, or nowhere.

``play`` returns once the chunk has been *played* (for the speaker and a paced file) so that
the caller knows what was actually said; ``stop`` cuts playback at once (barge-in); ``hold``
pauses it where it is (a sound over the answer that may be the user interrupting) until
``release`` or ``stop``.
``play_text`` also remembers the words being played, so that the wake word engine can tell
the assistant's own voice (heard back through the microphone) from the user's, whoever
played them: a voice turn, an API answer or ``/api/v1/speak``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
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
from heisenberg.core.config import AudioConfig
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
        self.sounding_until = 0.0
        """``time.monotonic()`` when the last sample handed to the device sounds (0: a sink
        without a clock): after ``stop``, when playback really ended."""
        self.held = False
        """Playback is paused where it was (``hold``): silence until ``release``."""

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

    def hold(self) -> None:
        """Pause what is playing where it is (a sink that plays instantly has nothing to
        pause): ``play`` waits, the device plays silence."""
        self.held = True

    def release(self) -> None:
        """Go on from where ``hold`` paused."""
        self.held = False

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
        # Paced in 20 ms steps: a cancellation keeps only what was "played"; held, the
        # file gets what a speaker would sound meanwhile (silence).
        step = self.rate_hz // 50
        for i in range(0, len(samples), step):
            while self.held:
                await asyncio.sleep(step / self.rate_hz)
                self._parts.append(np.zeros(step, np.int16))
            part = samples[i:i + step]
            await asyncio.sleep(len(part) / self.rate_hz)
            self._parts.append(part)
            self.played_ms += len(part) * 1000 / self.rate_hz

    async def stop(self) -> None:
        self.held = False

    def samples(self) -> np.ndarray:
        return np.concatenate(self._parts) if self._parts else np.zeros(0, np.int16)

    async def close(self) -> None:
        await asyncio.to_thread(write_wav, self.path, self.samples(), self.rate_hz)


class SpeakerSink(AudioSink):
    """The speaker through sounddevice, as a callback stream that runs continuously once
    opened: PortAudio pulls 20 ms blocks from a queue that ``play`` fills (silence when it is
    empty, so the device never underruns), which makes the output clock exact: block ``n``
    sounds at a fixed start plus ``n`` blocks. That clock stamps what is played for the echo
    canceller (``reference``). ``stop`` empties the queue: playback ends within one block
    plus the device latency."""

    BLOCK_S = 0.02
    LATENCY_S = AudioConfig.output_latency_ms / 1000
    """The default device buffer (``audio.output_latency_ms``'s default): what still plays
    after a stop. Python callbacks wait for the GIL, and on a busy machine a buffer too small runs
    dry (each underrun would also move the echo's timing); 50 ms never ran dry in
    bench/interrupt.py, with two cores busy besides (docs/VOICE.md)."""

    def __init__(self, device: str = "", rate_hz: int = 22050,
                 latency_s: float | None = None) -> None:
        super().__init__()
        self.latency_s = self.LATENCY_S if latency_s is None else latency_s
        self.device: str | int | None = (int(device) if device.isdigit() else device) or None
        self.name = f"speaker:{device or 'default'}"
        self.rate_hz = rate_hz
        self.block = round(rate_hz * self.BLOCK_S)
        self._stream: Any = None
        self._lock = asyncio.Lock()
        self._queue: collections.deque[_Playing] = collections.deque()
        self._queue_lock = threading.Lock()
        self.reference: EchoReference | None = None
        """Where what is played is recorded, with when it sounds (for echo cancellation)."""
        self._elapsed_s = 0.0
        self._start: float | None = None
        self.underflows = 0
        """Blocks the device asked for too late (it played a gap): a busy machine."""
        self.reference_failures = 0
        """Blocks the echo reference failed to take (logged once; playback goes on)."""

    def _ensure_stream(self) -> Any:
        if self._stream is None:
            try:
                sd = sounddevice()
            except AudioDeviceError as exc:
                self.error = exc.message
                raise
            try:
                self._stream = sd.RawOutputStream(
                    samplerate=self.rate_hz, channels=1, dtype="int16", device=self.device,
                    latency=self.latency_s, blocksize=self.block, callback=self._callback)
                self._elapsed_s = 0.0
                self._start = None
                self._stream.start()
            except (sd.PortAudioError, ValueError) as exc:
                self._stream = None
                self.error = f"speaker {self.device or '(default)'} unavailable: {exc}"
                raise AudioDeviceError(self.error) from exc
            self.error = None
        return self._stream

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: the next ``frames`` samples, from the queue or silence."""
        if status.output_underflow:
            self.underflows += 1
        block = np.zeros(frames, np.int16)
        filled = 0
        finished: list[_Playing] = []
        with self._queue_lock:
            while filled < frames and self._queue and not self.held:
                playing = self._queue[0]
                part = playing.samples[playing.position:playing.position + frames - filled]
                block[filled:filled + len(part)] = part
                filled += len(part)
                playing.position += len(part)
                if playing.position >= len(playing.samples):
                    finished.append(self._queue.popleft())
        outdata[:] = block.tobytes()
        # The output is one continuous stream of samples, so block n sounds n blocks after
        # the first: the device's estimate of when (its DAC time) is taken once, and again
        # only after an underflow, and then only later (the device played a gap of
        # silence). The echo canceller's delay tracker absorbs the estimate's error; it
        # could not follow a clock that moved a little at every block.
        elapsed = self._elapsed_s
        if self._start is None or status.output_underflow:
            at = time.monotonic() + (time_info.outputBufferDacTime - time_info.currentTime)
            self._start = at - elapsed if self._start is None else max(self._start,
                                                                      at - elapsed)
        if filled:
            self.sounding_until = self._start + elapsed + filled / self.rate_hz
        if self.reference is not None:
            try:
                self.reference.played(block, self.rate_hz, self._start + elapsed)
            except Exception:  # an exception here would abort the stream: keep playing
                if not self.reference_failures:
                    log.exception("speaker: the echo reference failed; playback goes on")
                self.reference_failures += 1
        self._elapsed_s += frames / self.rate_hz
        for playing in finished:
            playing.finish()

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
            stream = await asyncio.to_thread(self._ensure_stream)
            playing = _Playing(samples, asyncio.get_running_loop())
            with self._queue_lock:
                self._queue.append(playing)
        try:
            # Bounded: a device that stops calling back (unplugged) must not hang a turn.
            limit_s = len(samples) / self.rate_hz + 2.0 + float(stream.latency)
            while not playing.done.is_set():
                try:
                    async with asyncio.timeout(limit_s):
                        await playing.done.wait()
                except TimeoutError:
                    if stream.active:
                        continue
                    async with self._lock:
                        await asyncio.to_thread(self._discard_stream)
                    self.error = "speaker failed while playing: the device stopped"
                    raise AudioDeviceError(self.error) from None
        finally:
            with self._queue_lock:  # cancelled (barge-in): what is left is not played
                if playing in self._queue:
                    self._queue.remove(playing)
            self.played_ms += playing.position * 1000 / self.rate_hz

    async def stop(self) -> None:
        """Cut playback: the queue is emptied; the device plays what it holds (one block
        plus its latency) and then silence. A hold ends with it."""
        with self._queue_lock:
            dropped = list(self._queue)
            self._queue.clear()
            self.held = False
        for playing in dropped:
            playing.finish()

    async def close(self) -> None:
        await self.stop()
        async with self._lock:
            await asyncio.to_thread(self._discard_stream)


class _Playing:
    """One ``play`` request in the speaker's queue."""

    def __init__(self, samples: np.ndarray, loop: asyncio.AbstractEventLoop) -> None:
        self.samples = samples
        self.position = 0
        self.done = asyncio.Event()
        self._loop = loop

    def finish(self) -> None:
        """From any thread: the request is over (played, or dropped by ``stop``)."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(self.done.set)
