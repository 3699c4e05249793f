"""A room for open-speaker tests: what the microphone hears of the speaker, and of the user.

The speaker's sound reaches the microphone late (``delay_ms``: device buffers, air), smeared
by the room (convolution with an impulse response: direct path, a few early reflections, an
exponentially decaying tail of ``rt60_s``), mildly clipped by a small loudspeaker, at a level
``level_db`` relative to the user's voice at the microphone; the user speaks over it.

``impulse_response`` and ``RoomFilter`` are used both offline (``simulate``, in audio time)
and on the real-time PulseAudio rig (``PulseRoom``: a thread that reads the speaker's null
sink monitor and plays the room's version of it into the microphone's null sink).
"""

from __future__ import annotations

import threading

import numpy as np

from heisenberg.audio.format import RATE_HZ


def impulse_response(rng: np.random.Generator, rt60_s: float = 0.25) -> np.ndarray:
    """A small room's impulse response at 16 kHz, direct path first, unit energy."""
    n = int(rt60_s * RATE_HZ)
    t = np.arange(n) / RATE_HZ
    ir = rng.standard_normal(n) * 0.25 * np.exp(-6.9 * t / rt60_s)
    ir[:int(0.002 * RATE_HZ)] = 0.0
    ir[0] = 1.0
    for _ in range(6):  # early reflections: walls, desk, screen (2-25 ms later)
        ir[int(rng.uniform(0.002, 0.025) * RATE_HZ)] += rng.uniform(-0.5, 0.5)
    return ir / np.sqrt(np.sum(ir ** 2))


def loudspeaker(x: np.ndarray) -> np.ndarray:
    """A small speaker driven near its limit: soft clipping of the loudest peaks."""
    peak = 0.7 * 32767
    return peak * np.tanh(x / peak)


class RoomFilter:
    """Streaming: speaker samples in, what reaches the microphone out (delay, IR, gain)."""

    def __init__(self, ir: np.ndarray, delay_ms: float, gain: float) -> None:
        self.ir = ir
        self.gain = gain
        self._tail = np.zeros(len(ir) - 1 + int(delay_ms * RATE_HZ / 1000))
        self._delay = int(delay_ms * RATE_HZ / 1000)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        wet = np.convolve(loudspeaker(block.astype(np.float64)), self.ir) * self.gain
        wet = np.concatenate([np.zeros(self._delay), wet])
        out = np.zeros(len(self._tail) + len(block))
        out[:len(self._tail)] += self._tail
        out[:len(wet)] += wet
        self._tail = out[len(block):]
        return out[:len(block)]


def echo_gain(played: np.ndarray, user: np.ndarray, ir: np.ndarray, level_db: float) -> float:
    """The gain that puts the speaker's echo ``level_db`` above the user's voice (RMS over
    their voiced parts)."""
    def voiced_rms(x: np.ndarray) -> float:
        x = x.astype(np.float64)
        frames = x[:len(x) // 320 * 320].reshape(-1, 320)
        energy = np.mean(frames ** 2, axis=1)
        return float(np.sqrt(np.mean(energy[energy > 0.1 * energy.max()])))
    wet = np.convolve(loudspeaker(played.astype(np.float64)), ir)
    return voiced_rms(user) / voiced_rms(wet) * 10 ** (level_db / 20)


def simulate(played: np.ndarray, user: np.ndarray, user_at: int, ir: np.ndarray,
             delay_ms: float, gain: float) -> np.ndarray:
    """The microphone's int16 signal: ``played`` through the room, ``user`` from sample
    ``user_at``, in one buffer as long as ``played`` plus the room's tail."""
    room = RoomFilter(ir, delay_ms, gain)
    n = max(len(played), user_at + len(user)) + len(ir) + int(delay_ms * RATE_HZ / 1000)
    out = room(np.concatenate([played, np.zeros(n - len(played))]).astype(np.float64))
    out[user_at:user_at + len(user)] += user
    return np.clip(out, -32768, 32767).astype(np.int16)


ASOUNDRC = """\
pcm.hz_speaker { type pulse device "speaker" hint { show on description "test: the loudspeaker" } }
pcm.hz_mic { type pulse device "room.monitor" hint { show on description "test: the microphone" } }
pcm.hz_room_in { type pulse device "speaker.monitor" hint { show on description "room: played" } }
pcm.hz_room_out { type pulse device "room" hint { show on description "room: at the microphone" } }
"""
"""ALSA devices over PulseAudio's two null sinks: ``hz_speaker`` (where the assistant plays),
``hz_mic`` (what its microphone hears: the ``room`` sink's monitor), and the room's own ends.
The user's voice is played into ``hz_room_out`` too: the sink mixes it with the echo."""

PULSE_MODULES = ["--load=module-null-sink sink_name=speaker",
                 "--load=module-null-sink sink_name=room"]
"""The ``pulseaudio`` arguments that make the two sinks."""


class PulseRoom:
    """The real-time room: a thread reads what the speaker sink plays (its monitor), puts it
    through ``RoomFilter`` and plays it into the room sink, whose monitor is the microphone.
    ``gain`` can be changed while it runs; PulseAudio's own buffering adds to ``delay_ms``.
    """

    BLOCK = 320  # 20 ms

    def __init__(self, ir: np.ndarray, delay_ms: float, gain: float) -> None:
        self.filter = RoomFilter(ir, delay_ms, gain)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None

    def __enter__(self) -> PulseRoom:
        self._thread = threading.Thread(target=self._run, name="room", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        import sounddevice as sd
        try:
            with sd.RawInputStream(samplerate=RATE_HZ, channels=1, dtype="int16",
                                   device="hz_room_in", blocksize=self.BLOCK,
                                   latency="low") as ins, \
                 sd.RawOutputStream(samplerate=RATE_HZ, channels=1, dtype="int16",
                                    device="hz_room_out", blocksize=self.BLOCK,
                                    latency="low") as outs:
                while not self._stop.is_set():
                    data, _ = ins.read(self.BLOCK)
                    block = np.frombuffer(bytes(data), np.int16)
                    wet = self.filter(block)
                    outs.write(np.clip(wet, -32768, 32767).astype(np.int16).tobytes())
        except BaseException as exc:  # reported to the test or bench that runs the room
            self.error = exc
