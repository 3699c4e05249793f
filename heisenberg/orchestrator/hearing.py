"""The hearing front end: microphone chunks in, what was heard out. Synchronous, audio time.

Until a wake word every chunk goes to the wake word engine, and the last ``preroll`` chunks
are kept. After a detection the pre-roll and what follows go to the end-of-speech detector
(VAD + ``Endpointer``) until the utterance ends; then the wake word engine hears again (a new
wake word is a barge-in, even while the answer is being transcribed).

``Hearing.feed`` returns bus events (WAKEWORD_DETECTED, SPEECH_STARTED, and TURN_ENDED when
the wake word was followed by silence) and cues for the task side: ``Pause`` (the speaker
paused long enough to transcribe early), ``Resumed`` (they went on) and ``Utterance`` (the
audio of the question, with its SPEECH_ENDED event). It blocks (the wake word model and the VAD run
here), so the voice loop calls it in a worker thread, one chunk at a time; nothing else
touches it meanwhile. Time is the audio's own: the tests feed recorded speech and need no
sleeps.
"""

from __future__ import annotations

import collections
import logging
import uuid
from dataclasses import dataclass

import numpy as np

from heisenberg.audio.format import RATE_HZ, AudioChunk
from heisenberg.core.events import (
    Event,
    Interrupted,
    SpeechEnded,
    SpeechStarted,
    TurnEnded,
    WakewordDetected,
)
from heisenberg.voice.vad import Endpointer, EndpointEvent, WebRtcVad
from heisenberg.voice.wakeword import WakeWordEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pause:
    """The speaker paused mid-utterance: the audio so far, to transcribe early."""

    turn_id: str
    samples: np.ndarray


@dataclass(frozen=True)
class Resumed:
    """Speech went on after a ``Pause``: an early transcript of it is stale."""

    turn_id: str


@dataclass(frozen=True)
class Utterance:
    """The end of speech was decided: the question's audio, pre-roll included."""

    turn_id: str
    samples: np.ndarray
    ended: SpeechEnded


Cue = Pause | Resumed | Utterance
Heard = Event | Cue


class Hearing:
    def __init__(self, wake: WakeWordEngine, vad: WebRtcVad, endpointer: Endpointer, *,
                 preroll_chunks: int, early_stt_s: float, speaking_threshold: float,
                 wake_word: str = "") -> None:
        """``early_stt_s``: seconds of silence after speech before ``Pause`` (0 = never).
        ``speaking_threshold``: the wake word threshold while the assistant's own voice
        plays. ``wake_word``: its distinctive word, to ignore it in what the speaker plays."""
        self.wake = wake
        self.vad = vad
        self.endpointer = endpointer
        self.early_stt_s = early_stt_s
        self.speaking_threshold = speaking_threshold
        self.wake_word = wake_word
        self._recent: collections.deque[AudioChunk] = collections.deque(
            maxlen=max(1, preroll_chunks))
        self._utterance: list[AudioChunk] = []
        self._paused = False
        self.listening_to = ""
        """The turn whose question is being heard; empty while waiting for the wake word."""

    def feed(self, chunk: AudioChunk, *, playing: bool = False, echo: str = "") -> list[Heard]:
        """One chunk of microphone audio. ``playing``: the assistant's own voice is playing;
        ``echo``: the words the microphone may be hearing from the speaker."""
        if self.listening_to:
            return self._listen(chunk)
        detection = self.wake.process(chunk, self.speaking_threshold if playing else None)
        self._recent.append(chunk)
        if detection is None:
            return []
        if self.wake_word and self.wake_word in echo.lower():
            log.info("wake word ignored: it is in what I am saying")
            return []
        self.listening_to = uuid.uuid4().hex[:12]
        self.endpointer.reset()
        self._paused = False
        # Pre-roll: the audio just before the detection, else the first word is lost.
        self._utterance = list(self._recent)
        self._recent.clear()
        return [WakewordDetected(model=detection.model, score=detection.score,
                                 turn_id=self.listening_to)]

    def stop(self, reason: str) -> list[Heard]:
        """Stop hearing the current question (the input ended, or failed)."""
        turn_id, self.listening_to = self.listening_to, ""
        self._utterance = []
        self.endpointer.reset()
        if not turn_id:
            return []
        return [Interrupted(reason=reason, turn_id=turn_id),
                TurnEnded(outcome="interrupted", turn_id=turn_id)]

    def _listen(self, chunk: AudioChunk) -> list[Heard]:
        turn_id = self.listening_to
        self._utterance.append(chunk)
        is_speech = self.vad.is_speech(chunk)
        ep = self.endpointer
        event = ep.process(chunk.duration_ms / 1000, is_speech)
        heard: list[Heard] = []
        if is_speech or not ep.in_speech:
            if self._paused:
                heard.append(Resumed(turn_id))
            self._paused = False
        elif (not self._paused and self.early_stt_s > 0 and not ep.done
              and ep.silence_s >= self.early_stt_s):
            # Whisper takes ~0.3-0.6 s here; starting it this far into the silence instead of
            # at the end-of-speech decision saves most of that.
            self._paused = True
            heard.append(Pause(turn_id, self._samples()))
        at_ms = int(ep.elapsed_s * 1000)
        if event is EndpointEvent.SPEECH_STARTED:
            heard.append(SpeechStarted(audio_ms=at_ms, turn_id=turn_id))
        elif event is EndpointEvent.NO_SPEECH:
            self.listening_to, self._utterance = "", []
            heard.append(TurnEnded(outcome="no_speech", turn_id=turn_id))
        elif event in (EndpointEvent.SPEECH_ENDED, EndpointEvent.MAX_LENGTH):
            samples = self._samples()
            self.listening_to, self._utterance = "", []
            ended = SpeechEnded(audio_ms=at_ms, duration_ms=len(samples) * 1000 // RATE_HZ,
                                turn_id=turn_id)
            heard.append(Utterance(turn_id, samples, ended))
        return heard

    def _samples(self) -> np.ndarray:
        return np.concatenate([c.array() for c in self._utterance])
