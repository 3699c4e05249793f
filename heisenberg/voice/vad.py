"""Voice activity and end-of-speech detection.

``Endpointer`` is a pure state machine driven by audio time (seconds of audio fed), not the
wall clock, so it is tested without sleeps. ``WebRtcVad`` says whether a chunk is speech.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from heisenberg.audio.format import AudioChunk

# Audio time is a sum of float chunk lengths: compare with a tolerance far below one sample.
_EPS_S = 1e-6


class EndpointEvent(StrEnum):
    SPEECH_STARTED = "speech_started"
    SPEECH_ENDED = "speech_ended"
    """Enough silence after speech: the utterance is complete."""
    MAX_LENGTH = "max_length"
    """The utterance reached the maximum length and is cut there."""
    NO_SPEECH = "no_speech"
    """No speech at all within the no-speech timeout."""


@dataclass
class Endpointer:
    end_silence_s: float = 0.65
    max_utterance_s: float = 15.0
    no_speech_timeout_s: float = 5.0
    speech_start_s: float = 0.12
    """Speech needed before it counts as started (filters clicks)."""

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.elapsed_s = 0.0
        self.in_speech = False
        self.done = False
        self._speech_run_s = 0.0
        self.silence_s = 0.0
        self.speech_start_at_s: float | None = None

    def process(self, chunk_s: float, is_speech: bool) -> EndpointEvent | None:
        """Feed ``chunk_s`` seconds of audio classified as speech or not."""
        if self.done:
            return None
        self.elapsed_s += chunk_s
        if not self.in_speech:
            self._speech_run_s = self._speech_run_s + chunk_s if is_speech else 0.0
            if self._speech_run_s >= self.speech_start_s - _EPS_S:
                self.in_speech = True
                self.speech_start_at_s = self.elapsed_s - self._speech_run_s
                return EndpointEvent.SPEECH_STARTED
            if self.elapsed_s >= self.no_speech_timeout_s - _EPS_S:
                self.done = True
                return EndpointEvent.NO_SPEECH
            return None
        assert self.speech_start_at_s is not None
        if self.elapsed_s - self.speech_start_at_s >= self.max_utterance_s - _EPS_S:
            self.done = True
            return EndpointEvent.MAX_LENGTH
        self.silence_s = 0.0 if is_speech else self.silence_s + chunk_s
        if self.silence_s >= self.end_silence_s - _EPS_S:
            self.done = True
            return EndpointEvent.SPEECH_ENDED
        return None


class WebRtcVad:
    """webrtcvad on 20 ms frames; a chunk is speech when at least half its frames are."""

    FRAME_MS = 20

    def __init__(self, aggressiveness: int = 2) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(aggressiveness)

    def any_speech(self, chunk: AudioChunk) -> bool:
        """True if any 20 ms frame of the chunk is voiced (a sensitive gate)."""
        return any(self._vad.is_speech(frame, chunk.rate_hz) for frame in self._frames(chunk))

    def _frames(self, chunk: AudioChunk) -> list[bytes]:
        frame_bytes = chunk.rate_hz * self.FRAME_MS // 1000 * 2
        return [chunk.pcm[i:i + frame_bytes]
                for i in range(0, len(chunk.pcm) - frame_bytes + 1, frame_bytes)]

    def is_speech(self, chunk: AudioChunk) -> bool:
        frames = self._frames(chunk)
        if not frames:
            return False
        voiced = sum(self._vad.is_speech(frame, chunk.rate_hz) for frame in frames)
        return voiced * 2 >= len(frames)
