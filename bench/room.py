"""A room for open-speaker tests: what the microphone hears of the speaker, and of the user.

The speaker's sound reaches the microphone late (``delay_ms``: device buffers, air), smeared
by the room (convolution with an impulse response: direct path, a few early reflections, an
exponentially decaying tail of ``rt60_s``), mildly clipped by a small loudspeaker, at a level
``level_db`` relative to the user's voice at the microphone; the user speaks over it.

``simulate`` builds it offline, in audio time; ``pulse_rig`` builds it in real time inside a
private PulseAudio (the tests' and bench/barge_in.py's sound device).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from heisenberg.audio.format import RATE_HZ, resample, write_wav


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


def echo_gain(played: np.ndarray, user: np.ndarray, ir: np.ndarray, level_db: float,
              clip: bool = True) -> float:
    """The gain that puts the speaker's echo ``level_db`` above the user's voice (RMS over
    their voiced parts); ``clip``: through ``loudspeaker`` (the offline room clips)."""
    def voiced_rms(x: np.ndarray) -> float:
        x = x.astype(np.float64)
        frames = x[:len(x) // 320 * 320].reshape(-1, 320)
        energy = np.mean(frames ** 2, axis=1)
        return float(np.sqrt(np.mean(energy[energy > 0.1 * energy.max()])))
    dry = played.astype(np.float64)
    wet = np.convolve(loudspeaker(dry) if clip else dry, ir)
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
pcm.hz_room { type pulse device "room" hint { show on description "room: at the microphone" } }
pcm.hz_played { type pulse device "speaker.monitor" hint { show on description "test: played" } }
"""
"""ALSA devices over PulseAudio's null sinks: ``hz_speaker`` (where the assistant plays),
``hz_mic`` (what its microphone hears: the ``room`` sink's monitor), ``hz_room`` (where
the user speaks: the sink mixes the voice with the echo) and ``hz_played`` (what really
sounded from the speaker, before the room: to time when playback stopped)."""


SINK_RATE_HZ = 44100
"""PulseAudio's default sample rate, the null sinks' own."""


def pulse_modules(ir_wav: Path, delay_ms: float) -> list[str]:
    """The room, inside PulseAudio (real time, in C, never late): the speaker's monitor is
    looped back ``delay_ms`` later into a filter sink that convolves it with the impulse
    response (module-virtual-surround-sink with a one-channel response), which plays into
    the room sink. The level is the loopback's volume (``PulseRoom.set_gain``)."""
    return ["--load=module-null-sink sink_name=speaker",
            "--load=module-null-sink sink_name=room",
            f"--load=module-virtual-surround-sink sink_name=room_ir sink_master=room "
            f"hrir={ir_wav}",
            f"--load=module-loopback source=speaker.monitor sink=room_ir "
            f"latency_msec={delay_ms:g} adjust_time=0"]


PULSE_LOG = "pulseaudio.log"
"""PulseAudio's own log (level info), in the rig's directory."""
SKIP_LINE = "module-loopback.c: Could not peek into queue"
"""What PulseAudio logs when the room's loopback ran dry (each ~13 ms): the echo path
then gets silence and stays that much later, which no real room does (seen on a busy
machine about once in 40 answers; a canceller needs ~1 s to learn the new path)."""


class PulseRoom:
    """The running room's controls: ``set_gain`` scales the echo (linear amplitude);
    ``skips`` counts the times its echo path ran dry so far (``log``: the rig's
    ``PULSE_LOG``)."""

    def __init__(self, env: dict[str, str], log: Path | None = None) -> None:
        self.env = {**os.environ, **env}
        self.log = log

    def skips(self) -> int:
        if self.log is None or not self.log.exists():
            return 0
        with self.log.open(errors="replace") as lines:
            return sum(SKIP_LINE in line for line in lines)

    def set_gain(self, gain: float) -> None:
        """The loopback stream's volume: the echo alone (the filter sink shares its volume
        with the room sink, which carries the user's voice too)."""
        db = 20 * np.log10(max(gain, 1e-6))
        inputs = subprocess.run(["pactl", "list", "short", "sink-inputs"], env=self.env,
                                check=True, capture_output=True, text=True).stdout
        index = next(line.split()[0] for line in inputs.splitlines()
                     if "module-loopback" in line)
        subprocess.run(["pactl", "set-sink-input-volume", index, f"{db:.2f}dB"],
                       env=self.env, check=True, capture_output=True)


@contextlib.contextmanager
def pulse_rig(tmp: Path, ir: np.ndarray, delay_ms: float) -> Iterator[dict[str, str]]:
    """A private PulseAudio with the room above and the ALSA devices; yields the environment
    (HOME, XDG_RUNTIME_DIR) that the caller must put in ``os.environ`` before PortAudio
    (re)initialises. PulseAudio logs to ``tmp / PULSE_LOG``."""
    if not shutil.which("pulseaudio"):
        raise RuntimeError("Debian package pulseaudio is missing (.ci/install)")
    home, runtime = tmp / "home", tmp / "xdg"
    home.mkdir(parents=True, exist_ok=True)
    runtime.mkdir(mode=0o700, exist_ok=True)
    (home / ".asoundrc").write_text(ASOUNDRC)
    ir_wav = tmp / "room-ir.wav"
    # At the sinks' own rate: PulseAudio would resample a 16 kHz response at load time, which
    # took longer than any test may wait.
    pcm = (ir / np.abs(ir).max() * 32000).astype(np.int16)
    write_wav(ir_wav, resample(pcm, RATE_HZ, SINK_RATE_HZ), SINK_RATE_HZ)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    with (tmp / PULSE_LOG).open("w") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
             *pulse_modules(ir_wav, delay_ms), "--load=module-native-protocol-unix",
             "--log-target=stderr", "--log-level=info"], env=env, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("pulseaudio did not start")
            time.sleep(0.1)
        yield {"HOME": env["HOME"], "XDG_RUNTIME_DIR": env["XDG_RUNTIME_DIR"]}
    finally:
        proc.terminate()
        proc.wait(10)
