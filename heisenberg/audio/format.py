"""The audio contract: what flows into the pipeline is 16 kHz, 16-bit, mono PCM in chunks.

Every chunk carries its format and a timestamp, so no stage has to assume a rate or a width.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

RATE_HZ = 16000
"""Sample rate of the pipeline's input audio."""
WIDTH_BYTES = 2
"""16-bit signed little-endian samples."""
CHANNELS = 1
CHUNK_SAMPLES = 1280
"""80 ms at 16 kHz: one openWakeWord frame."""
CHUNK_MS = CHUNK_SAMPLES * 1000 // RATE_HZ


@dataclass(frozen=True)
class AudioChunk:
    pcm: bytes
    """Interleaved signed 16-bit little-endian samples."""
    rate_hz: int = RATE_HZ
    timestamp_ms: int = 0
    """Audio time of the first sample: milliseconds since the source started."""
    channels: int = CHANNELS
    width_bytes: int = WIDTH_BYTES
    captured_at: float | None = None
    """``time.monotonic()`` seconds when the first sample was captured, for a live source
    (the echo canceller aligns it with what the speaker played); None for a file."""

    @property
    def samples(self) -> int:
        return len(self.pcm) // (self.width_bytes * self.channels)

    @property
    def duration_ms(self) -> float:
        return self.samples * 1000 / self.rate_hz

    def array(self) -> np.ndarray:
        return np.frombuffer(self.pcm, dtype=np.int16)


def to_mono_int16(data: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved int16 of ``channels`` channels to mono int16 (channel average)."""
    if channels == 1:
        return data.astype(np.int16, copy=False)
    frames = data.reshape(-1, channels).astype(np.int32)
    return (frames.mean(axis=1)).astype(np.int16)


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Mono int16 resampled with soxr (high quality); a no-op when the rates match."""
    if from_hz == to_hz or len(samples) == 0:
        return samples.astype(np.int16, copy=False)
    out = soxr.resample(samples.astype(np.float32), from_hz, to_hz)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def read_wav(path: str | Path, rate_hz: int = RATE_HZ) -> np.ndarray:
    """A WAV file as mono int16 at ``rate_hz``. Only 16-bit PCM is accepted."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise ValueError(f"{path}: {8 * wav.getsampwidth()}-bit samples; "
                                 "only 16-bit PCM WAV is supported")
            raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
            mono = to_mono_int16(raw, wav.getnchannels())
            return resample(mono, wav.getframerate(), rate_hz)
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a readable WAV file ({exc})") from exc


def write_wav(path: str | Path, samples: np.ndarray, rate_hz: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate_hz)
        wav.writeframes(samples.astype(np.int16).tobytes())


def chunks_of(samples: np.ndarray, rate_hz: int = RATE_HZ,
              chunk_samples: int = CHUNK_SAMPLES, start_ms: int = 0) -> list[AudioChunk]:
    """Cut mono int16 into chunks of ``chunk_samples`` (the last one zero-padded)."""
    out = []
    for i in range(0, len(samples), chunk_samples):
        part = samples[i:i + chunk_samples]
        if len(part) < chunk_samples:
            part = np.concatenate([part, np.zeros(chunk_samples - len(part), np.int16)])
        out.append(AudioChunk(part.tobytes(), rate_hz, start_ms + i * 1000 // rate_hz))
    return out
