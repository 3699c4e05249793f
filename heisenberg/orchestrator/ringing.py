"""Ringing timers, made heard: an alarm and "your 5 minute timer is done", again and again.

The voice loop runs ``Ringer.run`` beside its audio. A ring waits while the user is in a voice
turn (speaking, or being answered aloud): a timer that ends while they speak rings once
the turn has ended. It does not wait for typed questions (the speaker is free). After each
ring the loop listens ``LISTEN_S`` without the wake word, so that a plain "stop" is heard
(any question said then is answered, and stops the ringing too); the wake word stops it as
well, and so do the API and ``skills.timer_ring_s`` (see ``skills/timers.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import numpy as np

from heisenberg.audio.format import AudioChunk
from heisenberg.audio.sinks import AudioSink
from heisenberg.core.errors import AudioDeviceError
from heisenberg.skills import Skills, Timers
from heisenberg.voice.tts import TextToSpeech

log = logging.getLogger(__name__)

RING_EVERY_S = 8.0
"""From the start of one ring to the start of the next."""
LISTEN_S = 4.0
"""After a ring, speech heard within this many seconds is a question (or "stop")."""


def alarm(rate_hz: int, volume: float = 0.5) -> AudioChunk:
    """Three quick two-tone beeps (~1.1 s): unlike the earcons and the voice, so that it is
    known from across the room for what it is."""
    beep = int(rate_hz * 0.16)
    t = np.arange(beep) / rate_hz
    edge = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.008)
    tone = edge * 0.5 * (np.sin(2 * np.pi * 988 * t) + np.sin(2 * np.pi * 1319 * t))
    gap = np.zeros(int(rate_hz * 0.2))
    wave = np.concatenate([tone, gap] * 3) * volume * 32767
    return AudioChunk(wave.astype(np.int16).tobytes(), rate_hz)


class Ringer:
    def __init__(self, timers: Timers, tts: TextToSpeech, sink: AudioSink,
                 phrases: Callable[[], Skills], busy: Callable[[], bool],
                 listen: Callable[[float], None]) -> None:
        """``phrases``: what announces a timer (the assistant's skills, in its language).
        ``busy``: the user is in a voice turn (the ring waits). ``listen``: open a window
        of that many seconds without the wake word, once the speaker is quiet."""
        self.timers = timers
        self.tts = tts
        self.sink = sink
        self.phrases = phrases
        self.busy = busy
        self.listen = listen
        self.rings = 0
        """Rings played (each: the alarm and the announcement)."""
        self._sounding = False
        """A ring is in the speaker now."""

    async def stop(self, reason: str) -> None:
        """The user stopped it (the wake word, "stop", speaking over it): every timer whose
        ring was heard is done and the ring falls silent now. (One that ended while they
        were speaking has not been heard yet: it rings after their turn.)"""
        if self.timers.stop_ringing(reason, heard_only=True) and self._sounding:
            self._sounding = False  # silenced here: the ring must not cut what comes next
            await self.sink.stop()

    async def run(self) -> None:
        while True:
            await self.timers.ringing_changed.wait()
            self.timers.ringing_changed.clear()
            while self.timers.ringing():
                if self.busy():
                    await asyncio.sleep(0.1)
                    continue
                await self._ring()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RING_EVERY_S):
                        await self._until_stopped()

    async def _until_stopped(self) -> None:
        while self.timers.ringing():
            await self.timers.ringing_changed.wait()
            self.timers.ringing_changed.clear()

    async def _ring(self) -> None:
        ringing = self.timers.ringing()
        phrases = self.phrases()
        text = " ".join(phrases.announcement(timer) for timer in ringing)
        try:
            audio = await asyncio.to_thread(self.tts.synthesize, text)
        except Exception:  # the alarm alone still rings
            log.warning("could not synthesize %r", text, exc_info=True)
            audio = None
        for timer in ringing:
            self.timers.heard(timer.timer_id)
        playing = asyncio.create_task(self._play(audio, text), name="ring")
        stopped = asyncio.create_task(self._until_stopped(), name="ring-stopped")
        self._sounding = True
        try:
            await asyncio.wait({playing, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if self._sounding and not playing.done():  # stopped elsewhere (the API, the
                await self.sink.stop()                # limit) while it sounds: silence
        finally:
            self._sounding = False
            for task in (playing, stopped):
                task.cancel()
            await asyncio.gather(playing, stopped, return_exceptions=True)
        self.rings += 1
        if self.timers.ringing():
            self.listen(LISTEN_S)

    async def _play(self, audio: AudioChunk | None, text: str) -> None:
        try:
            await self.sink.play(alarm(self.tts.rate_hz))
            if audio is not None:
                await self.sink.play_text(audio, text)
        except AudioDeviceError as exc:
            log.warning("the timer could not be heard: %s", exc.message)
