"""Speech-to-text, text-to-speech and the wake word on another machine, over Wyoming.

A small desk box hears and speaks while a bigger machine transcribes (and thinks): each stage
can be a Wyoming service (``stt.engine = "wyoming"`` with ``stt.uri``, likewise ``tts`` and
``wakeword``), Heisenberg's own (``heisenberg wyoming``) or any other. They implement the same
blocking engine interfaces as the local ones (the voice loop already calls those in worker
threads), with plain sockets and the ``wyoming`` package's own event reader and writer.

Every wait has a limit (``remote_timeout_s``): a remote engine that is gone or stops answering
is an ``STTError``/``TTSError`` for that turn (the user hears the usual "sorry" once), and the
next turn connects again; the remote wake word reconnects every ``RETRY_S`` and says so once
in the log.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import time
from typing import BinaryIO, cast

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk as WyChunk
from wyoming.audio import AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, read_event, write_event
from wyoming.tts import Synthesize
from wyoming.wake import Detect, Detection

from heisenberg.audio.format import RATE_HZ, AudioChunk, resample
from heisenberg.core.errors import RemoteError, STTError, TTSError
from heisenberg.voice.stt import SpeechToText, is_meaningful
from heisenberg.voice.tts import TextToSpeech
from heisenberg.voice.wakeword import Detection as WakeDetection
from heisenberg.voice.wakeword import WakeWordEngine

log = logging.getLogger(__name__)

RETRY_S = 2.0
"""Seconds between reconnections of the remote wake word."""
SEND_SAMPLES = 1024


def parse_uri(uri: str) -> tuple[str, int] | str:
    """``tcp://host:port`` → (host, port); ``unix:///path`` → the path."""
    if uri.startswith("unix://"):
        return uri.removeprefix("unix://")
    host, _, port = uri.removeprefix("tcp://").rpartition(":")
    if not uri.startswith("tcp://") or not port.isdigit():
        raise RemoteError(f"{uri!r} is not tcp://host:port or unix:///path")
    return host.strip("[]"), int(port)


class Connection:
    """One Wyoming connection with a deadline on every read and write."""

    def __init__(self, uri: str, timeout_s: float) -> None:
        self.uri = uri
        self.timeout_s = timeout_s
        where = parse_uri(uri)
        try:
            if isinstance(where, str):
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout_s)
                self.sock.connect(where)
            else:
                self.sock = socket.create_connection(where, timeout=timeout_s)
        except OSError as exc:
            raise RemoteError(f"the Wyoming service at {uri} cannot be reached: {exc}") from exc
        self.file = cast(BinaryIO, self.sock.makefile("rwb"))

    def send(self, *events: Event) -> None:
        try:
            for event in events:
                write_event(event, self.file)
            self.file.flush()
        except OSError as exc:
            raise RemoteError(f"lost the Wyoming service at {self.uri}: {exc}") from exc

    def receive(self) -> Event:
        try:
            event = read_event(self.file)
        except OSError as exc:  # socket.timeout is an OSError
            raise RemoteError(f"the Wyoming service at {self.uri} did not answer within "
                              f"{self.timeout_s:.0f} s (remote_timeout_s): {exc}") from exc
        if event is None:
            raise RemoteError(f"the Wyoming service at {self.uri} closed the connection")
        if Error.is_type(event.type):
            error = Error.from_event(event)
            raise RemoteError(f"the Wyoming service at {self.uri} says: {error.text}")
        return event

    def ready(self) -> bool:
        """An event is waiting (for polling without blocking)."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()


def audio_events(samples: np.ndarray, rate: int = RATE_HZ) -> list[Event]:
    pcm = samples.astype(np.int16).tobytes()
    return [AudioStart(rate=rate, width=2, channels=1).event(),
            *(WyChunk(rate=rate, width=2, channels=1, audio=pcm[i:i + SEND_SAMPLES * 2]).event()
              for i in range(0, len(pcm), SEND_SAMPLES * 2)),
            AudioStop().event()]


class WyomingSTT(SpeechToText):
    def __init__(self, uri: str, timeout_s: float = 30.0, language: str = "") -> None:
        parse_uri(uri)  # a bad URI fails at start, not at the first question
        self.uri, self.timeout_s, self.language = uri, timeout_s, language

    def transcribe(self, samples: np.ndarray) -> str:
        try:
            conn = Connection(self.uri, self.timeout_s)
            try:
                conn.send(Transcribe(language=self.language or None).event(),
                          *audio_events(samples))
                while not Transcript.is_type((event := conn.receive()).type):
                    pass
            finally:
                conn.close()
        except RemoteError as exc:
            raise STTError(f"remote speech-to-text: {exc.message}") from exc
        text = Transcript.from_event(event).text.strip()
        return text if is_meaningful(text) else ""


class WyomingTTS(TextToSpeech):
    def __init__(self, uri: str, timeout_s: float = 30.0, rate_hz: int = 22050) -> None:
        parse_uri(uri)
        self.uri, self.timeout_s = uri, timeout_s
        self.rate_hz = rate_hz
        """What the sink is opened at; audio of another rate is resampled to it."""

    def synthesize(self, text: str) -> AudioChunk:
        try:
            conn = Connection(self.uri, self.timeout_s)
            try:
                conn.send(Synthesize(text=text).event())
                while not AudioStart.is_type((event := conn.receive()).type):
                    pass
                start = AudioStart.from_event(event)
                parts: list[bytes] = []
                while not AudioStop.is_type((event := conn.receive()).type):
                    if WyChunk.is_type(event.type):
                        parts.append(WyChunk.from_event(event).audio)
            finally:
                conn.close()
        except RemoteError as exc:
            raise TTSError(f"remote text-to-speech: {exc.message}") from exc
        if start.width != 2 or start.channels != 1:
            raise TTSError(f"remote text-to-speech at {self.uri} sent {start.width}-byte, "
                           f"{start.channels}-channel audio (16-bit mono expected)")
        samples = np.frombuffer(b"".join(parts), np.int16)
        return AudioChunk(resample(samples, start.rate, self.rate_hz).tobytes(), self.rate_hz)


class WyomingWake(WakeWordEngine):
    """The microphone's audio streamed to a remote wake word service; a detection comes back
    whenever it hears one. ``process`` never blocks longer than a send."""

    def __init__(self, uri: str, model: str, timeout_s: float = 5.0) -> None:
        parse_uri(uri)
        self.uri, self.name, self.timeout_s = uri, model, timeout_s
        self._conn: Connection | None = None
        self._retry_at = 0.0
        self._failed = False

    def _connect(self) -> Connection | None:
        if self._conn is not None:
            return self._conn
        if time.monotonic() < self._retry_at:
            return None
        try:
            conn = Connection(self.uri, self.timeout_s)
            conn.send(Detect(names=[self.name]).event(),
                      AudioStart(rate=RATE_HZ, width=2, channels=1).event())
        except RemoteError as exc:
            self._lost(exc)
            return None
        if self._failed:
            log.warning("remote wake word at %s works again", self.uri)
        self._failed = False
        self._conn = conn
        return conn

    def _lost(self, exc: RemoteError) -> None:
        if not self._failed:
            log.error("remote wake word: %s; retrying every %.0f s", exc.message, RETRY_S)
        self._failed = True
        self._retry_at = time.monotonic() + RETRY_S
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def process(self, chunk: AudioChunk, threshold: float | None = None) -> WakeDetection | None:
        conn = self._connect()
        if conn is None:
            return None
        try:
            conn.send(WyChunk(rate=RATE_HZ, width=2, channels=1, audio=chunk.pcm,
                              timestamp=chunk.timestamp_ms).event())
            while conn.ready():
                event = conn.receive()
                if Detection.is_type(event.type):
                    found = Detection.from_event(event)
                    # The service's rule decides; the score is not part of the protocol.
                    self._restart(conn)
                    return WakeDetection(found.name or self.name, 1.0,
                                         chunk.timestamp_ms + int(chunk.duration_ms))
        except RemoteError as exc:
            self._lost(exc)
        return None

    def _restart(self, conn: Connection) -> None:
        """A service answers one detection per ``detect``: ask again for the next one."""
        conn.send(AudioStop().event(), Detect(names=[self.name]).event(),
                  AudioStart(rate=RATE_HZ, width=2, channels=1).event())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
