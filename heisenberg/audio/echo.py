"""Echo cancellation: the microphone without the assistant's own voice.

On open speakers the microphone hears the answer as loud as the user, and the wake word, the
VAD and whisper all hear it. Heisenberg owns the playback, so it knows exactly what the
speaker played and when: ``EchoReference`` is that record, on the ``time.monotonic()`` clock
(the speaker writes every block it outputs, silence included). ``EchoCanceller`` is the
first stage of the hearing: for each microphone chunk (stamped with its capture time) it
takes what was played then, shifted by the tracked playback-to-capture delay, and removes
its echo with Speex's adaptive filter (``libspeexdsp``, Debian's ``libspeexdsp1``) and
Speex's residual echo suppressor. When nothing has played for a while, chunks pass
untouched: no cost.

Why Speex: measured on double talk (bench/barge_in.py and docs/VOICE.md), it removes the
echo and keeps the user's voice; WebRTC's AEC3 removed more echo alone but erased the user
while both spoke. Why the delay tracker: the device latencies the sink and the microphone
report are estimates (PulseAudio adds its own buffering), and a filter of a few hundred
milliseconds must be placed on the real echo path. It cross-correlates (GCC-PHAT) one second
of microphone against what was played, once a second while something plays.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import logging
import threading
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import soxr

from heisenberg.audio.format import CHUNK_SAMPLES, RATE_HZ, AudioChunk
from heisenberg.core.errors import AudioDeviceError

log = logging.getLogger(__name__)

FRAME_SAMPLES = 160
"""Speex works on 10 ms frames at 16 kHz (an 80 ms chunk is 8 of them)."""
CHUNK_S = CHUNK_SAMPLES / RATE_HZ

# speex_echo.h / speex_preprocess.h request numbers.
_ECHO_SET_SAMPLING_RATE = 24
_PRE_SET_DENOISE = 0
_PRE_SET_AGC = 2
_PRE_SET_DEREVERB = 8
_PRE_SET_NOISE_SUPPRESS = 18
_PRE_SET_ECHO_SUPPRESS = 20
_PRE_SET_ECHO_SUPPRESS_ACTIVE = 22
_PRE_SET_ECHO_STATE = 24

_lib: ctypes.CDLL | None = None


def speexdsp() -> ctypes.CDLL:
    """The Speex DSP library, loaded once; ``AudioDeviceError`` naming the package if absent."""
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise AudioDeviceError(
                "echo cancellation needs the Speex DSP library: install the Debian package "
                "libspeexdsp1 (or set audio.echo_cancel = \"off\")") from exc
        vp, i16p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16)
        lib.speex_echo_state_init.restype = vp
        lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.speex_echo_cancellation.argtypes = [vp, i16p, i16p, i16p]
        lib.speex_echo_ctl.argtypes = [vp, ctypes.c_int, vp]
        lib.speex_echo_state_reset.argtypes = [vp]
        lib.speex_echo_state_destroy.argtypes = [vp]
        lib.speex_preprocess_state_init.restype = vp
        lib.speex_preprocess_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.speex_preprocess_ctl.argtypes = [vp, ctypes.c_int, vp]
        lib.speex_preprocess_run.argtypes = [vp, i16p]
        lib.speex_preprocess_state_destroy.argtypes = [vp]
        _lib = lib
    return _lib


class SpeexEcho:
    """One Speex echo canceller (+ its residual echo suppressor) at 16 kHz.

    ``process_both(mic, played)``: two int16 arrays of the same length, a multiple of
    ``FRAME_SAMPLES``, where ``played[i]`` is the reference for ``mic[i]`` (already aligned to
    the echo path's delay); returns the cleaned microphone signal, by the linear filter alone
    and after the residual suppressor.
    """

    def __init__(self, filter_ms: int = 250, suppress: bool = True) -> None:
        lib = self._lib = speexdsp()
        self.filter_samples = RATE_HZ * filter_ms // 1000
        self._echo = lib.speex_echo_state_init(FRAME_SAMPLES, self.filter_samples)
        rate = ctypes.c_int(RATE_HZ)
        lib.speex_echo_ctl(self._echo, _ECHO_SET_SAMPLING_RATE, ctypes.byref(rate))
        self._pre: int | None = None
        self._linear_tail = np.zeros(FRAME_SAMPLES, np.int16)
        """The linear filter's last frame, not yet returned (``process_both``)."""
        if suppress:
            self._pre = lib.speex_preprocess_state_init(FRAME_SAMPLES, RATE_HZ)
            # Residual echo suppression only: noise suppression and gain control would change
            # the user's voice for the wake word model, which was trained without them.
            # (Speex applies its suppression gains only with "denoise" on: it is on, with
            # the noise attenuation at 0 dB.)
            for request, value in ((_PRE_SET_DENOISE, 1), (_PRE_SET_NOISE_SUPPRESS, 0),
                                   (_PRE_SET_AGC, 0), (_PRE_SET_DEREVERB, 0),
                                   (_PRE_SET_ECHO_SUPPRESS, -40),
                                   (_PRE_SET_ECHO_SUPPRESS_ACTIVE, -15)):
                v = ctypes.c_int(value)
                lib.speex_preprocess_ctl(self._pre, request, ctypes.byref(v))
            lib.speex_preprocess_ctl(self._pre, _PRE_SET_ECHO_STATE, self._echo)

    def process_both(self, mic: np.ndarray, played: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """``(linear, suppressed)``: what the linear filter alone left, and what the residual
        suppressor left of that (the same array without a suppressor). The suppressor's output lags
        its input by one frame (measured: 160 samples), so the linear output is returned
        one frame late too: the two line up, and a switch from one to the other neither
        skips nor repeats 10 ms."""
        if len(mic) != len(played) or len(mic) % FRAME_SAMPLES:
            raise ValueError(f"echo: {len(mic)} microphone and {len(played)} reference "
                             f"samples; both must be one multiple of {FRAME_SAMPLES}")
        mic = np.ascontiguousarray(mic, np.int16)
        played = np.ascontiguousarray(played, np.int16)
        linear = np.empty_like(mic)
        out = linear if self._pre is None else np.empty_like(mic)
        i16p = ctypes.POINTER(ctypes.c_int16)
        for i in range(0, len(mic), FRAME_SAMPLES):
            frame = slice(i, i + FRAME_SAMPLES)
            self._lib.speex_echo_cancellation(
                self._echo, mic[frame].ctypes.data_as(i16p),
                played[frame].ctypes.data_as(i16p), linear[frame].ctypes.data_as(i16p))
            if self._pre is not None:
                out[frame] = linear[frame]
                self._lib.speex_preprocess_run(self._pre, out[frame].ctypes.data_as(i16p))
        if self._pre is None:
            return linear, out
        late = np.concatenate([self._linear_tail, linear])
        self._linear_tail = late[-FRAME_SAMPLES:]
        return late[:len(linear)], out

    def reset(self) -> None:
        self._lib.speex_echo_state_reset(self._echo)
        self._linear_tail[:] = 0

    def close(self) -> None:
        if getattr(self, "_pre", None) is not None:
            self._lib.speex_preprocess_state_destroy(self._pre)
            self._pre = None
        if getattr(self, "_echo", None):
            self._lib.speex_echo_state_destroy(self._echo)
            self._echo = None

    def __del__(self) -> None:
        self.close()


class EchoReference:
    """What the speaker played, as 16 kHz samples on a clock in seconds (``time.monotonic()``
    for a real speaker). Written by the sink's thread, read by the hearing's: locked.

    ``played(samples, rate_hz, at)``: ``samples`` start sounding at ``at`` (the writer records
    what the device outputs, so a stopped answer is simply not written). ``window(start,
    n)``: the ``n`` samples that sounded from ``start`` (zeros where nothing did).
    """

    SLACK = RATE_HZ // 100
    """10 ms (in samples): how far a block's stated start may be from the last one's end
    and still continue it."""

    def __init__(self, keep_s: float = 8.0) -> None:
        self._ring = np.zeros(int(keep_s * RATE_HZ), np.int16)
        self._end = 0
        """Absolute index (seconds * RATE_HZ) one past the last sample written."""
        self._lock = threading.Lock()
        self._resamplers: dict[int, soxr.ResampleStream] = {}
        self._in_rate = 0
        self._in_end_s = float("-inf")
        """The source rate, and the clock time at which the last block written ends."""
        self.last_sound_at = float("-inf")
        """Clock time at which the last non-silent sample written ends."""

    def played(self, samples: np.ndarray, rate_hz: int, at: float) -> None:
        # The adaptive filter needs a reference without a sample missing or repeated: a
        # block that starts within the writer's clock jitter of where the last one ended
        # continues it (its resampled samples follow the last ones, however many the
        # resampler gave back this time); only a real jump (a device that ran dry) moves it.
        continues = (rate_hz == self._in_rate
                     and abs(at - self._in_end_s) <= self.SLACK / RATE_HZ)
        if not continues:
            self._resamplers.pop(rate_hz, None)
        self._in_rate, self._in_end_s = rate_hz, at + len(samples) / rate_hz
        pcm = self._resample(samples, rate_hz)
        size = len(self._ring)
        start = self._end if continues else round(at * RATE_HZ)
        if len(pcm) > size:  # only the newest part fits
            start, pcm = start + len(pcm) - size, pcm[-size:]
        with self._lock:
            if start > self._end:  # a gap: silence sounded meanwhile
                self._write(self._end, np.zeros(min(start - self._end, size), np.int16))
            self._write(start, pcm)
            self._end = max(self._end, start + len(pcm))
            if np.any(pcm):
                self.last_sound_at = max(self.last_sound_at, (start + len(pcm)) / RATE_HZ)

    def _resample(self, samples: np.ndarray, rate_hz: int) -> np.ndarray:
        """To 16 kHz as one continuous stream per source rate (block by block, a resampler
        without memory would add a click at every block edge, which no echo has)."""
        if rate_hz == RATE_HZ:
            return samples.astype(np.int16, copy=False)
        stream = self._resamplers.get(rate_hz)
        if stream is None:
            stream = self._resamplers[rate_hz] = soxr.ResampleStream(rate_hz, RATE_HZ, 1)
        out = stream.resample_chunk(samples.astype(np.float32))
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)

    def _write(self, start: int, pcm: np.ndarray) -> None:
        size = len(self._ring)
        first = start % size
        head = min(len(pcm), size - first)
        self._ring[first:first + head] = pcm[:head]
        self._ring[:len(pcm) - head] = pcm[head:]

    def window(self, start_s: float, n: int) -> np.ndarray:
        size = len(self._ring)
        start = round(start_s * RATE_HZ)
        out = np.zeros(n, np.int16)
        with self._lock:
            lo, hi = max(start, self._end - size), min(start + n, self._end)
            if lo < hi:
                idx = np.arange(lo, hi) % size
                out[lo - start:hi - start] = self._ring[idx]
        return out


def gcc_phat(mic: np.ndarray, ref: np.ndarray, max_lag: int, lead: int = 0
             ) -> tuple[int, float]:
    """The lag (samples, ``-lead``..``max_lag``) by which ``mic`` follows ``ref`` best, and
    the peak's salience (peak over the correlation's RMS; above ~8 is a clear echo path).
    ``ref`` starts ``max_lag`` samples before ``mic`` and ends ``lead`` samples after it."""
    n = 1 << int(np.ceil(np.log2(len(ref) + len(mic))))
    cross = np.fft.rfft(ref.astype(np.float64), n) * np.conj(
        np.fft.rfft(mic.astype(np.float64), n))
    # Whitened, not fully (PHAT with beta 0.8): bins where the voice has no energy would
    # otherwise count as much as those where it has.
    cross /= np.abs(cross) ** 0.8 + 1e-6 * float(np.abs(cross).max() + 1e-12)
    cc = np.fft.irfft(cross, n)
    # mic[i] ~ ref[i + max_lag - lag]: a lag peaks at index max_lag - lag (either sign: a
    # speaker may be wired inverted).
    window = np.abs(cc[:max_lag + lead + 1])
    k = int(np.argmax(window))
    rms = float(np.sqrt(np.mean(cc ** 2))) + 1e-12
    # At the edge of the range (or within 2 ms of it) the best is the skirt of a peak
    # outside it: no echo path inside the range.
    edge = RATE_HZ // 500
    if k <= edge or k >= len(window) - 1 - edge:
        return max_lag - k, 0.0
    # A wall can reflect nearly as strongly as the direct path: of the peaks at least half
    # as high within 50 ms before the highest, take the earliest (the direct path), so
    # that the estimate does not flip between the two from one second to the next.
    near = window[k:min(len(window), k + RATE_HZ // 20)]
    earliest = k + int(np.flatnonzero(near >= 0.5 * window[k])[-1])
    if earliest >= len(window) - 1 - edge:
        return max_lag - earliest, 0.0
    return max_lag - earliest, float(window[k]) / rms


def erle_db(heard: float, left: float, samples: int) -> float | None:
    """Echo return loss enhancement over ``samples`` microphone samples of energy ``heard``
    of which ``left`` remained after the canceller, in dB; None when there was too little
    echo to tell (an RMS under 100: a pause in the answer)."""
    if heard / samples < 100.0 ** 2:
        return None
    return float(10 * np.log10(heard / max(left, 1.0)))


@dataclass
class EchoStats:
    delay_ms: float
    """The playback-to-capture delay now in use (during a move's trial, the old one)."""
    active_chunks: int = 0
    """Chunks the canceller processed (something had played)."""
    passed_chunks: int = 0
    """Chunks passed untouched (nothing played)."""
    delay_updates: int = 0
    """Times the delay in use changed (a move the trial kept counts once)."""
    delay_reverts: int = 0
    """Moves of the delay that a trial turned down: the filter where it was removed more."""


@dataclass
class _Trial:
    """A move of the delay on trial (``EchoCanceller.TRIAL_SECONDS``): the filter at the old
    alignment goes on beside the new one, and what the canceller hands on is its output
    until the new one removes more of the echo."""

    old: SpeexEcho
    offset_s: float
    """The old delay minus the new one (clock steps move both alike)."""
    heard: float = 0.0
    old_left: float = 0.0
    new_left: float = 0.0
    samples: int = 0
    """The second being measured: microphone energy, what each filter left, samples."""
    seconds: list[tuple[float, float, float]] = field(default_factory=list)
    """The measured seconds of echo: (heard, old left, new left)."""


class Cleaned(NamedTuple):
    """A microphone chunk without the assistant's echo, in two versions."""

    chunk: AudioChunk
    """Without the echo and its residue (the linear filter, then the residual echo
    suppressor): what the wake word, the voice detectors and the interruption gate hear."""
    speech: AudioChunk
    """What speech to text hears: the linear filter's output alone once the canceller is
    ``settled``, else ``chunk``. The suppressor's gains cut into the user's voice wherever
    the answer sounds at the same time, and whisper lost more words to that than to the
    filter's faint residue (docs/VOICE.md); until the filter has settled, its residue
    would be words of the answer, which the suppressor keeps out."""


class EchoCanceller:
    """The hearing's first stage: a microphone chunk in, the chunk without the echo of what
    ``reference`` played out. Synchronous (the hearing's worker thread calls it).

    ``delay_ms`` is the starting playback-to-capture delay; it is re-estimated while
    something plays, between ``-max_lead_ms`` (the devices' reported latencies
    overstate it: the microphone hears a sample before the sink's clock says it sounds) and
    ``max_delay_ms``. The reference is placed ``margin_ms`` earlier than the
    estimate, so that the direct path falls inside the filter, not before it.
    """

    SETTLED_DB = 20.0
    """The echo return loss enhancement (microphone over cleaned energy, over a second of
    echo) that makes the canceller ``settled`` when ``SETTLE_SECONDS`` seconds in a row
    reach it."""
    SETTLE_SECONDS = 2
    """A filter that has just reached ``SETTLED_DB`` for one second may still be adapting.
    A precaution: the leak of a CI failure (the whole echo for ~100 ms, which the
    interruption gate took for a user) came a few seconds after the canceller first
    settled; its cause, most likely, a skip of the rig's echo path (docs/VOICE.md)."""
    UNSETTLED_DB = 12.0
    """Less than this makes it unsettled again: the echo path moved away from the filter
    (the two devices' clocks drift apart, a device skipped) at once when the delay tracker
    finds the echo elsewhere, else after two such seconds in a row whose residue is still
    the echo (``ECHO_LEFT``). A poor second is most often the user speaking over the
    answer (at equal loudness ~70 ms of their voice in a second is enough), which must not
    close the gate that lets them interrupt."""
    MOVED_S = 0.010
    """How far from the last estimates (their median) an estimate of the echo path must be
    to show that the path moved (a user's voice over the echo moved estimates ~6 ms on the
    rig)."""

    ECHO_LEFT = 0.33
    """A poor second counts only when what the filter left is still mostly the echo: its
    correlation with the reference, at the best lag, this much or more. Measured: 0.36-0.61
    for the echo itself (the simulated room, 42 seconds); 0.03-0.29 for users speaking over
    an answer the filter removed (the rig, dev voices, 140 seconds), where two such seconds
    in a row had unsettled it in 47 of 48 trials, and speech to text then switched to the
    suppressor's output in the middle of their words."""

    TRIAL_SECONDS = 3
    """A move of the delay (after the first) is on trial for this many seconds of echo, the
    filter at the old alignment going on beside the new one: it is undone if the old one
    removed ``TRIAL_MARGIN_DB`` more of the echo over them, kept as soon as the new one
    removes as much in a second. On the rig a move after 25 minutes of answers (an estimate
    33 ms from a delay where the filter removed 60 dB) left it removing 20 dB for minutes,
    until the speaker's stream restarted (bench/barge_in.py, 2026-12-07). A path that moved
    within the filter's length the old one learns again (the two remove about as much); one
    that moved beyond it, it cannot."""
    TRIAL_MARGIN_DB = 10.0

    REBUILD_S = 8.0
    """How much of the answers' echo heard alone (no user) is kept to rebuild the filter
    after a user's turn (``_rebuild``)."""
    REBUILD_PASSES = 3
    """It adapts on that echo three times over (~24 s of adaptation, ~0.1 s of CPU here):
    once (8 s) left it ~10 dB short of the filter it replaces (the simulated room)."""
    GUARD_S = 2.5
    """What is dropped of it when the hearing starts taking down the user: the audio just
    before the decision may already hold their voice (a wake phrase, up to ~2 s of audio for
    one the transcript check confirmed; the onset of a voice interruption)."""

    def __init__(self, reference: EchoReference, *, delay_ms: float = 0.0,
                 max_delay_ms: float = 500.0, max_lead_ms: float = 250.0,
                 filter_ms: int = 250, suppress: bool = True,
                 margin_ms: float = 30.0) -> None:
        self.reference = reference
        self.filter_ms, self.suppress = filter_ms, suppress
        self.speex = SpeexEcho(filter_ms, suppress)
        self.tail_s = filter_ms / 1000
        self.max_delay_s = max_delay_ms / 1000
        self.max_lead_s = max_lead_ms / 1000
        self.margin_s = margin_ms / 1000
        self.stats = EchoStats(delay_ms)
        self._delay_s = delay_ms / 1000
        self._mic: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self._mic_samples = 0
        self._estimates: collections.deque[float] = collections.deque(maxlen=5)
        self._next_at: float | None = None
        """Where the next chunk's capture time should be, if the clock does not step."""
        self._heard = self._left = 0.0
        """Microphone and cleaned energy of the second being measured."""
        self._measured = 0
        """Its samples so far."""
        self._residue: list[np.ndarray] = []
        """What the linear filter left of it, chunk by chunk."""
        self._residue_start = 0.0
        """Where the reference aligned with its first chunk starts."""
        self._good = self._poor = 0
        """Measured seconds in a row at ``SETTLED_DB`` or more, below ``UNSETTLED_DB``."""
        self._moved = False
        """The tracker's last estimate puts the echo more than ``MOVED_S`` away from where
        the estimates before it did."""
        self.settled = False
        """The delay is found and the filter has adapted to it (it removed ``SETTLED_DB`` of
        the echo over ``SETTLE_SECONDS`` seconds in a row, since it last started from
        nothing): what it leaves is the user and the room, not the assistant's own voice.
        Until then a residue of the echo remains, which a voice detector would take for
        speech."""
        self.listening = False
        """The hearing is taking down what the user says (a question after a wake word or
        a voice interruption): a second that removes little is then their voice, not the
        filter, and is not measured. Before this, the user's voice after an interruption
        (the answer stopped, its echo still within reach) made two poor seconds and
        unsettled it, and the next answer had to settle again (two seconds) before the
        gate would let them interrupt it (bench/interrupt.py, dev voices: 3 of 36 missed).
        The filter went on adapting under their voice, though, and may have drifted: once
        they are done, one good second (not two) settles it again."""
        self._heard_user = False
        """Chunks went through the filter while ``listening``."""
        self._was_listening = False
        self._echo_alone: collections.deque[tuple[float, np.ndarray, np.ndarray]] = (
            collections.deque())
        """(capture time, microphone, aligned reference) of the last chunks the filter took
        while nobody was being listened to, oldest first: up to ``REBUILD_S + GUARD_S``
        seconds."""
        self.rebuilds = 0
        """Times the filter was rebuilt after a user's turn."""
        self._trial: _Trial | None = None
        """A move of the delay on trial, if one is."""

    def process(self, chunk: AudioChunk) -> AudioChunk:
        """The chunk without the echo (``Cleaned.chunk``)."""
        return self.clean(chunk).chunk

    def clean(self, chunk: AudioChunk) -> Cleaned:
        """The chunk without the echo, for listening and for speech to text (``Cleaned``);
        both are ``chunk`` itself when nothing played."""
        at = chunk.captured_at
        if at is None:
            return Cleaned(chunk, chunk)
        mic = chunk.array()
        self._follow_clock(at, len(mic))
        self._follow_listening()
        # Nothing sounded within the echo's reach: the microphone hears no echo.
        if self.reference.last_sound_at < at - self.max_delay_s - self.tail_s:
            self.stats.passed_chunks += 1
            self._mic.clear()
            self._mic_samples = 0
            return Cleaned(chunk, chunk)
        self.stats.active_chunks += 1
        self._track(at, mic)
        start = at - self._delay_s + self.margin_s
        played = self.reference.window(start, len(mic))
        usable = len(mic) - len(mic) % FRAME_SAMPLES
        out, linear = mic.copy(), mic.copy()
        linear[:usable], out[:usable] = self.speex.process_both(mic[:usable], played[:usable])
        if self._trial is not None:
            linear, out = self._try(at, mic, usable, out, linear)
        elif not self.listening:
            self._echo_alone.append((at, mic[:usable], played[:usable]))
            while len(self._echo_alone) * CHUNK_S > self.REBUILD_S + self.GUARD_S:
                self._echo_alone.popleft()
        settled = self.settled  # the filter that made this chunk
        if self.stats.delay_updates > 0:
            self._measure(mic, out, linear, start)
        cleaned = replace(chunk, pcm=out.tobytes())
        if not settled:
            return Cleaned(cleaned, cleaned)
        return Cleaned(cleaned, replace(chunk, pcm=linear.tobytes()))

    def _try(self, at: float, mic: np.ndarray, usable: int, out: np.ndarray,
             linear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One chunk of a move's trial: the filter at the old alignment takes it too, and
        hands on its output ``(linear, suppressed)`` while the trial lasts. Each second of
        echo (nobody being listened to) compares the two; the move is kept (``_keep``) or
        undone (``_undo``)."""
        trial = self._trial
        assert trial is not None
        start = at - (self._delay_s + trial.offset_s) + self.margin_s
        played = self.reference.window(start, len(mic))
        old_linear, old_out = mic.copy(), mic.copy()
        old_linear[:usable], old_out[:usable] = trial.old.process_both(mic[:usable],
                                                                       played[:usable])
        if not self.listening:
            trial.heard += float(np.sum(mic.astype(np.float64) ** 2))
            trial.old_left += float(np.sum(old_out.astype(np.float64) ** 2))
            trial.new_left += float(np.sum(out.astype(np.float64) ** 2))
            trial.samples += len(mic)
            if trial.samples >= RATE_HZ:
                second = (trial.heard, trial.old_left, trial.new_left)
                old_db = erle_db(trial.heard, trial.old_left, trial.samples)
                new_db = erle_db(trial.heard, trial.new_left, trial.samples)
                trial.heard = trial.old_left = trial.new_left = 0.0
                trial.samples = 0
                if old_db is not None and new_db is not None:
                    trial.seconds.append(second)
                    if new_db >= old_db:
                        self._keep(old_db, new_db)
                        return linear, out
                    if len(trial.seconds) >= self.TRIAL_SECONDS:
                        heard, old_left, new_left = (sum(x) for x in zip(*trial.seconds,
                                                                          strict=True))
                        old_db, new_db = (10 * np.log10(heard / max(left, 1.0))
                                          for left in (old_left, new_left))
                        if old_db >= new_db + self.TRIAL_MARGIN_DB:
                            self._undo(f"{new_db:.0f} dB of the echo removed there, "
                                       f"{old_db:.0f} dB where it was")
                        else:
                            self._keep(old_db, new_db)
                            return linear, out
        return old_linear, old_out

    def _in_use_s(self) -> float:
        """The delay of the filter whose output is handed on (the old one during a trial)."""
        return self._delay_s + (self._trial.offset_s if self._trial is not None else 0.0)

    def _keep(self, old_db: float, new_db: float) -> None:
        """The move removes more of the echo: the old filter goes, the new one starts to
        settle."""
        assert self._trial is not None
        self._trial.old.close()
        self._trial = None
        self.stats.delay_ms = self._delay_s * 1000
        self._start_afresh()
        log.info("echo: the delay moved to %.0f ms (%.0f dB of the echo removed there, "
                 "%.0f dB where it was)", self._delay_s * 1000, new_db, old_db)

    def _start_afresh(self) -> None:
        """The delay in use changed: the kept echo belongs to the old alignment, and the
        filter at the new one has to settle."""
        self.stats.delay_updates += 1
        self._echo_alone.clear()
        self.settled = False
        self._good = self._poor = 0
        self._restart_measure()

    def _undo(self, why: str) -> None:
        """Back to where the delay was, with the filter that went on there: the move
        removed no more of the echo (``why``)."""
        assert self._trial is not None
        trial, self._trial = self._trial, None
        tried = self._delay_s
        self.speex.close()
        self.speex = trial.old
        self._delay_s += trial.offset_s
        self.stats.delay_ms = self._delay_s * 1000
        self.stats.delay_reverts += 1
        self._estimates.clear()
        self._estimates.append(self._delay_s)
        log.info("echo: the move of the delay to %.0f ms undone, back to %.0f ms (%s)",
                 tried * 1000, self._delay_s * 1000, why)

    def _follow_listening(self) -> None:
        """When the hearing starts taking down the user, the last ``GUARD_S`` of kept echo
        may hold their voice: dropped. When it is done, the filter, which went on adapting
        under their voice while the answer and its echo stopped, is rebuilt (``_rebuild``)."""
        if self.listening and not self._was_listening:
            for _ in range(min(len(self._echo_alone), round(self.GUARD_S / CHUNK_S))):
                self._echo_alone.pop()
        elif self._was_listening and not self.listening and self._heard_user:
            if self._trial is not None:  # the rebuild starts from the alignment it had
                self._undo("the user spoke before the trial ended")
            self._rebuild()
        self._was_listening = self.listening

    def _rebuild(self) -> None:
        """A new filter, adapted on the kept echo of the answers before the user spoke
        (``REBUILD_S``, ``REBUILD_PASSES`` times over), replaces the one that adapted under
        their voice when it removes at least ``SETTLED_DB`` of that echo in each of the last
        (up to ``SETTLE_SECONDS``) seconds of it with echo enough to tell: the filter is
        then about what it was before they spoke, and one good second of the next answer,
        its first, settles the canceller again. Without this the filter could need seconds
        of the next answer to recover (bench/interrupt.py: ~6 s after one user's turn, and
        the gate that lets the user interrupt stayed shut meanwhile)."""
        history = list(self._echo_alone)
        per_second = round(1.0 / CHUNK_S)
        if len(history) < self.SETTLE_SECONDS * per_second:
            return
        fresh = SpeexEcho(self.filter_ms, self.suppress)
        for _ in range(self.REBUILD_PASSES - 1):
            for _, mic, played in history:
                fresh.process_both(mic, played)
        energies: list[tuple[float, float]] = []
        last_at = since = 0.0
        for at, mic, played in history:  # the last pass, measured
            _, out = fresh.process_both(mic, played)
            # The echo kept is pieces of several answers: the filter needs its length of one
            # piece before its output tells how well it removes that piece.
            since = since + CHUNK_S if abs(at - last_at - CHUNK_S) <= 0.01 else CHUNK_S
            last_at = at
            if since > self.tail_s + CHUNK_S:
                energies.append((float(np.sum(mic.astype(np.float64) ** 2)),
                                 float(np.sum(out.astype(np.float64) ** 2))))
        # Measured as the canceller measures, over seconds' worth of chunks with enough
        # echo to tell, the latest ones (the kept echo may end in a pause).
        seconds: list[float] = []
        end = len(energies)
        while len(seconds) < self.SETTLE_SECONDS and end >= per_second:
            part, end = energies[end - per_second:end], end - per_second
            second = erle_db(sum(h for h, _ in part), sum(o for _, o in part),
                             per_second * CHUNK_SAMPLES)
            if second is not None:
                seconds.append(second)
        shown = " / ".join(f"{e:.0f}" for e in seconds)
        if not seconds or min(seconds) < self.SETTLED_DB:
            fresh.close()
            log.info("echo: a filter rebuilt from the echo before the user's turn removed "
                     "%s dB of it: kept the one that adapted under their voice",
                     shown or "(too little echo to tell)")
            return
        # Its memory of the last reference frames is the end of the kept echo, which the
        # next answer does not follow: silence clears it (no far end, no adaptation), as
        # the echo's fading tail cleared the old filter's (otherwise its first second of the
        # next answer is poor, and settling waits two more: bench/interrupt.py, dev voices,
        # 8 of 36 users found it unsettled).
        frames = -(-fresh.filter_samples // FRAME_SAMPLES) + 2
        silence = np.zeros(frames * FRAME_SAMPLES, np.int16)
        fresh.process_both(silence, silence)
        self.speex.close()
        self.speex = fresh
        self.rebuilds += 1
        # Not settled at once: the echo path may have changed meanwhile (the daemon's rig
        # test: a filter fit to the echo before the turn, trusted at once, left the whole
        # echo of the next answer, and its own voice interrupted it). One good second of the
        # next answer settles it; a rebuilt filter shows it in the first second.
        self._heard_user = self.settled = False
        self._good, self._poor = self.SETTLE_SECONDS - 1, 0
        self._restart_measure()
        log.info("echo: the filter rebuilt from the %.1f s of echo before the user's turn "
                 "(%s dB removed): one good second settles it", len(history) * CHUNK_S, shown)

    def _follow_clock(self, at: float, samples: int) -> None:
        """Consecutive chunks are one stream: when the capture clock steps (it corrects
        its estimate in steps: ``CaptureClock.JUMP_S``) the samples did not move, so the
        delay moves with it and the filter keeps its alignment (nothing to learn again).
        A step of half a second or more is a new stream: the tracker finds the delay."""
        expected, self._next_at = self._next_at, at + samples / RATE_HZ
        step = at - expected if expected is not None else 0.0
        if 0.001 < abs(step) < 0.5:
            self._delay_s += step
            self.stats.delay_ms = self._in_use_s() * 1000
            self._estimates = collections.deque((e + step for e in self._estimates),
                                                maxlen=self._estimates.maxlen)
            self._mic.clear()
            self._mic_samples = 0
            log.debug("echo: the capture clock stepped %.0f ms; the delay follows", step * 1000)

    def _measure(self, mic: np.ndarray, out: np.ndarray, linear: np.ndarray,
                 start: float) -> None:
        """Add a chunk to the second being measured (``linear``: what the filter left of
        it, ``start``: where its aligned reference starts); at its end, settle if the filter
        removed enough of the echo, or unsettle if it no longer does."""
        if self.listening:
            self._restart_measure()
            self._heard_user = True
            return
        if self._heard_user:
            self._heard_user = False
            if self.settled:
                self.settled = False
                self._good, self._poor = self.SETTLE_SECONDS - 1, 0
                log.info("echo: the filter adapted under the user's voice: one good second "
                         "settles it again")
        self._heard += float(np.sum(mic.astype(np.float64) ** 2))
        self._left += float(np.sum(out.astype(np.float64) ** 2))
        if not self._residue:
            self._residue_start = start
        self._residue.append(linear)
        self._measured += len(mic)
        if self._measured < RATE_HZ:
            return
        second = erle_db(self._heard, self._left, self._measured)
        residue = np.concatenate(self._residue)
        self._restart_measure()
        if second is None:
            return
        self._good = self._good + 1 if second >= self.SETTLED_DB else 0
        poor = second < self.UNSETTLED_DB
        if (poor and self.settled and not self._moved
                and not self._echo_left(residue, self._residue_start)):
            log.info("echo: %.0f dB of the echo removed in the last second, but what is "
                     "left is not the echo (someone spoke over it): still settled", second)
            poor = False
        self._poor = self._poor + 1 if poor else 0
        if not self.settled and self._good >= self.SETTLE_SECONDS:
            self.settled = True
            log.info("echo: the canceller has settled (%.0f dB of the echo removed)", second)
        elif self.settled and self._poor and (self._poor >= 2 or self._moved):
            self.settled = False
            log.info("echo: only %.0f dB of the echo removed in the last second%s: "
                     "unsettled", second, " (the echo path moved)" if self._moved else "")

    def _restart_measure(self) -> None:
        self._heard = self._left = 0.0
        self._measured = 0
        self._residue = []

    def _echo_left(self, residue: np.ndarray, start: float) -> bool:
        """Whether ``residue`` (a second of what the filter left; its reference aligned from
        ``start``) is still mostly the echo of what was played: its correlation with the
        reference, at the best lag within the filter's reach, is ``ECHO_LEFT`` or more. A
        user speaking over the answer makes a second poor without it."""
        before, after = int((self.tail_s + 0.1) * RATE_HZ), int(0.1 * RATE_HZ)
        ref = self.reference.window(start - before / RATE_HZ,
                                    len(residue) + before + after).astype(np.float64)
        res = residue.astype(np.float64)
        energy = float(np.sum(res ** 2)) * float(np.sum(ref ** 2)) * len(res) / len(ref)
        if energy <= 0:
            return False
        n = 1 << int(np.ceil(np.log2(len(ref) + len(res))))
        cc = np.fft.irfft(np.fft.rfft(ref, n) * np.conj(np.fft.rfft(res, n)), n)
        peak = float(np.max(np.abs(cc[:before + after + 1]))) / np.sqrt(energy)
        log.debug("echo: the residue's correlation with the reference %.2f", peak)
        return peak >= self.ECHO_LEFT

    def _track(self, at: float, mic: np.ndarray) -> None:
        """Every second of microphone audio while something plays, estimate the delay again;
        the median of the last five is taken when three agree with it within 10 ms (the
        first estimate: at once) and it differs from the delay in use by more than 20 ms (by
        more than ``margin_ms`` once the canceller has settled)."""
        self._mic.append((at, mic))
        self._mic_samples += len(mic)
        if self._mic_samples < RATE_HZ:
            return
        first_at = self._mic[0][0]
        recent = np.concatenate([m for _, m in self._mic])
        self._moved = False
        self._mic.clear()
        self._mic_samples = 0
        found = self._find_delay(recent, first_at)
        if found is None:
            return
        before = float(np.median(self._estimates)) if self._estimates else self._delay_s
        self._moved = abs(found - before) > self.MOVED_S
        self._estimates.append(found)
        estimate = float(np.median(self._estimates))
        agreeing = [e for e in self._estimates if abs(e - estimate) <= 0.010]
        # Each move shifts the echo path inside the filter, which then adapts again: only a
        # clear, lasting change is worth it (the filter absorbs small ones: see margin_ms).
        # The first estimate is taken at once: until then the filter is in the wrong place.
        # A settled filter holds the echo path somewhere inside it: a move smaller than the
        # margin (a first estimate that took a wall's reflection for the direct path, ~20 ms
        # later) would only make it learn again in the middle of an answer.
        needed = 1 if self.stats.delay_updates == 0 else 3
        least = self.margin_s if self.settled else 0.020
        if (self._trial is None and len(agreeing) >= needed
                and abs(estimate - self._delay_s) > least):
            log.info("echo: playback-to-capture delay %.0f ms (was %.0f ms)%s",
                     estimate * 1000, self._delay_s * 1000,
                     "" if needed == 1 else ": on trial")
            if needed == 1:  # the first: the filter was nowhere yet
                self.speex.reset()
                self._start_afresh()
            else:  # the filter where it was goes on beside the new one (``_try``)
                self._trial = _Trial(self.speex, self._delay_s - estimate)
                self.speex = SpeexEcho(self.filter_ms, self.suppress)
            self._delay_s = estimate
            self.stats.delay_ms = self._in_use_s() * 1000
            self._moved = False
            self._estimates.clear()
            self._estimates.append(estimate)

    def _find_delay(self, recent: np.ndarray, first_at: float) -> float | None:
        """Where the echo of what was played is in ``recent`` (microphone audio captured
        from ``first_at``), in seconds; None when that cannot be told (too little played,
        no clear peak). The range is searched around the delay in use (around 0 for the
        first estimate): the delay walks with the capture clock's steps (on the rig -120 to
        -280 ms over 25 minutes), and a fixed range lost it: the best inside it was the
        skirt of the echo's peak at its edge, a wrong estimate the tracker then moved to."""
        centre = self._in_use_s() if self.stats.delay_updates else 0.0
        max_lag, lead = int(self.max_delay_s * RATE_HZ), int(self.max_lead_s * RATE_HZ)
        ref = self.reference.window(first_at - centre - self.max_delay_s,
                                    len(recent) + max_lag + lead)
        if np.sqrt(np.mean(ref.astype(np.float64) ** 2)) < 30 or not np.any(recent):
            return None  # too little played to tell
        lag, salience = gcc_phat(recent, ref, max_lag, lead)
        return centre + lag / RATE_HZ if salience >= 8.0 else None

    def close(self) -> None:
        self.speex.close()
        if self._trial is not None:
            self._trial.old.close()
