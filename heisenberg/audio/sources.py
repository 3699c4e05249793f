"""Where the pipeline's audio comes from: a microphone or a file, as 16 kHz mono chunks."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np

from heisenberg.audio.format import (
    CHUNK_SAMPLES,
    RATE_HZ,
    AudioChunk,
    chunks_of,
    read_wav,
    resample,
)
from heisenberg.audio.portaudio import sounddevice
from heisenberg.core.errors import AudioDeviceError

log = logging.getLogger(__name__)


class AudioSource(ABC):
    """An async stream of ``AudioChunk`` in the pipeline format (16 kHz, 16-bit, mono)."""

    name = "audio"
    error: str | None = None
    """Why no audio comes now (a device that retries), None while it flows."""

    @abstractmethod
    def chunks(self) -> AsyncIterator[AudioChunk]:
        """Chunks until the source ends; raises ``AudioDeviceError`` if the device fails."""

    async def close(self) -> None:
        return None


class FileSource(AudioSource):
    """A WAV file (any rate/channels, 16-bit), resampled to 16 kHz mono.

    ``realtime`` paces chunks at the speed of speech, as a microphone would deliver them
    (each when its last sample would have been captured; ``started_at`` is the
    ``time.monotonic()`` of sample 0); ``tail_silence_s`` appends silence so that
    end-of-speech can be detected at the end.
    """

    def __init__(self, path: str | Path, realtime: bool = False,
                 tail_silence_s: float = 2.0) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path.name}"
        self.realtime = realtime
        self.tail_silence_s = tail_silence_s
        self.started_at: float | None = None

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        if not self.path.is_file():
            raise AudioDeviceError(f"audio input file {str(self.path)!r} does not exist")
        try:
            samples = await asyncio.to_thread(read_wav, self.path)
        except ValueError as exc:
            raise AudioDeviceError(str(exc)) from exc
        tail = np.zeros(int(self.tail_silence_s * RATE_HZ), np.int16)
        start = self.started_at = time.monotonic()
        for chunk in chunks_of(np.concatenate([samples, tail])):
            if self.realtime:
                ahead_s = ((chunk.timestamp_ms + chunk.duration_ms) / 1000
                           - (time.monotonic() - start))
                if ahead_s > 0:
                    await asyncio.sleep(ahead_s)
                chunk = dataclasses.replace(chunk, captured_at=start + chunk.timestamp_ms / 1000)
            else:
                await asyncio.sleep(0)  # let the loop breathe between chunks
            yield chunk


class MicrophoneSource(AudioSource):
    """The microphone through sounddevice (PortAudio).

    With no usable device, PortAudio fails to open the stream; that is reported once per
    outage through ``on_error`` and retried every ``retry_s`` seconds, never fatal. A stream
    that stops delivering audio for ``stall_s`` seconds is reopened the same way.
    """

    def __init__(self, device: str = "", retry_s: float = 2.0, stall_s: float = 2.0,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.device: str | int | None = (int(device) if device.isdigit() else device) or None
        self.name = f"mic:{device or 'default'}"
        self.retry_s = retry_s
        self.stall_s = stall_s
        self.on_error = on_error
        self.failures = 0

    def _report(self, message: str) -> None:
        self.failures += 1
        self.error = message
        if self.failures == 1:
            log.error("%s (retrying every %.0fs)", message, self.retry_s)
            if self.on_error is not None:
                self.on_error(message)

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        loop = asyncio.get_running_loop()
        position = 0
        while True:
            try:
                sd = sounddevice()
            except AudioDeviceError as exc:  # a daemon waits for the package, like a mic
                self._report(exc.message)
                await asyncio.sleep(self.retry_s)
                continue
            queue: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue(maxsize=200)

            def callback(data: Any, frames: int, time_info: Any, status: Any,
                         queue: asyncio.Queue[tuple[bytes, float]] = queue) -> None:
                # Runs on PortAudio's thread: hand the audio to the event loop, with when it
                # arrived (the capture clock, for echo cancellation).
                loop.call_soon_threadsafe(_put_nowait, queue, (bytes(data), time.monotonic()))

            try:
                stream, rate = self._open(sd, callback)
            except (sd.PortAudioError, ValueError) as exc:
                self._report(f"microphone {self.device or '(default)'} unavailable: {exc}")
                await asyncio.sleep(self.retry_s)
                continue
            if self.failures:
                log.warning("microphone available again after %d failed attempts",
                            self.failures)
            self.failures = 0
            try:
                with stream:
                    pending = np.zeros(0, np.int16)
                    clock = CaptureClock(float(stream.latency))
                    opened_at = position  # the capture clock counts from the stream's start
                    while True:
                        try:
                            # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a
                            # cancellation that races a chunk's arrival, and the loop then
                            # never ends (seen once in CI as a hung test).
                            async with asyncio.timeout(self.stall_s):
                                data, arrived = await queue.get()
                        except TimeoutError:
                            self._report(f"microphone {self.device or '(default)'} stopped "
                                         f"delivering audio for {self.stall_s:.0f}s")
                            break
                        pcm = np.frombuffer(data, np.int16)
                        clock.arrived(len(pcm) / rate, arrived)
                        pending = np.concatenate([pending, resample(pcm, rate, RATE_HZ)])
                        while len(pending) >= CHUNK_SAMPLES:
                            part, pending = pending[:CHUNK_SAMPLES], pending[CHUNK_SAMPLES:]
                            self.error = None
                            captured_at = clock.captured_at((position - opened_at) / RATE_HZ)
                            yield AudioChunk(part.tobytes(), RATE_HZ,
                                             position * 1000 // RATE_HZ,
                                             captured_at=captured_at)
                            position += CHUNK_SAMPLES
            except sd.PortAudioError as exc:
                self._report(f"microphone failed: {exc}")
            await asyncio.sleep(self.retry_s)

    def _open(self, sd: Any, callback: Callable[..., None]) -> tuple[Any, int]:
        """Open at 16 kHz, or at the device's own rate (resampled) if it refuses 16 kHz."""
        try:
            stream = sd.RawInputStream(samplerate=RATE_HZ, channels=1, dtype="int16",
                                       blocksize=CHUNK_SAMPLES, device=self.device,
                                       callback=callback)
            return stream, RATE_HZ
        except sd.PortAudioError:
            info = sd.query_devices(self.device, "input")
            rate = int(info["default_samplerate"])
            stream = sd.RawInputStream(samplerate=rate, channels=1, dtype="int16",
                                       blocksize=rate * CHUNK_SAMPLES // RATE_HZ,
                                       device=self.device, callback=callback)
            return stream, rate


class CaptureClock:
    """When each sample of an input stream was captured, on ``time.monotonic()``.

    A block arrives at the callback ``latency`` after its last sample reached the converter,
    or later when the thread was busy; never earlier. So the stream's start is the
    smallest of ``arrived - latency - seconds so far`` over the last ``window`` blocks (a
    sliding minimum, so that the device clock may drift from the system's).
    """

    JUMP_S = 0.02
    """The start moves only when the estimate is this far off: the echo canceller needs
    the capture times of consecutive chunks exactly one chunk apart."""

    def __init__(self, latency_s: float, window: int = 200) -> None:
        self.latency_s = latency_s
        self._seconds = 0.0
        self._starts: collections.deque[float] = collections.deque(maxlen=window)
        self._start: float | None = None

    def arrived(self, seconds: float, at: float) -> None:
        """A block of ``seconds`` of audio arrived at ``at``."""
        self._seconds += seconds
        self._starts.append(at - self.latency_s - self._seconds)
        estimate = min(self._starts)
        if self._start is None or abs(estimate - self._start) > self.JUMP_S:
            self._start = estimate

    def captured_at(self, stream_s: float) -> float:
        """The capture time of the sample ``stream_s`` seconds into the stream."""
        assert self._start is not None, "no block has arrived yet"
        return self._start + stream_s


def _put_nowait(queue: asyncio.Queue[tuple[bytes, float]], data: tuple[bytes, float]) -> None:
    if queue.full():  # the loop fell behind: drop the oldest audio, keep the newest
        queue.get_nowait()
    queue.put_nowait(data)
