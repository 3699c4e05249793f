"""Echo cancellation in audio time: a simulated room (bench/room.py) between what the speaker
played and what the microphone hears; flite voices (not the tuned Piper voice)."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np
import pytest

from heisenberg.audio import echo
from heisenberg.audio.echo import EchoCanceller, EchoReference
from heisenberg.audio.format import CHUNK_SAMPLES, RATE_HZ, AudioChunk, chunks_of
from heisenberg.core.errors import AudioDeviceError
from heisenberg.voice.wakeword import OpenWakeWordEngine
from tests.conftest import flite

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from room import echo_gain, impulse_response, simulate  # the benchmarks' own room

ANSWER = ("Once upon a time, in a land far away, there lived a mighty dragon who guarded a "
          "mountain of gold and slept for a hundred years, and nobody dared to wake him up. "
          "The weather today will be mostly sunny with a light breeze from the west.")
T0 = 1000.0
"""The capture clock's time of the first microphone sample (seconds)."""


CHUNK_S = CHUNK_SAMPLES / RATE_HZ


def live(mic: np.ndarray) -> list[AudioChunk]:
    """The microphone signal as live chunks (capture times from ``T0``)."""
    return [AudioChunk(c.pcm, c.rate_hz, c.timestamp_ms, captured_at=T0 + c.timestamp_ms / 1000)
            for c in chunks_of(mic)]


def run(canceller: EchoCanceller | None, mic: np.ndarray) -> list[AudioChunk]:
    """``live`` chunks of ``mic`` through ``canceller``."""
    return [canceller.process(c) if canceller is not None else c for c in live(mic)]


def settled_by_chunk(canceller: EchoCanceller, mic: np.ndarray) -> list[bool]:
    """``run``, noting after each chunk whether the canceller is settled."""
    states = []
    for chunk in live(mic):
        canceller.process(chunk)
        states.append(canceller.settled)
    return states


def energy(chunks: list[AudioChunk]) -> float:
    return float(np.mean(np.concatenate([c.array() for c in chunks]).astype(np.float64) ** 2))


def inject_estimates(monkeypatch: pytest.MonkeyPatch, delays_s: list[float]) -> None:
    """Fault injection: the tracker's estimates of the delay are these, one a second."""
    estimates = iter(delays_s)

    def estimator(self: EchoCanceller, recent: np.ndarray, first_at: float) -> float:
        return next(estimates)

    monkeypatch.setattr(EchoCanceller, "_find_delay", estimator)


@pytest.fixture(scope="module")
def answer() -> np.ndarray:
    return flite(ANSWER, "kal")


def test_the_delay_is_found_and_the_echo_removed(answer: np.ndarray) -> None:
    """The speaker's clock says the answer started at T0 + 0.5 s; the microphone hears it
    130 ms later through a room. The canceller, started with no idea of the delay, finds it
    and removes most of the echo."""
    ir = impulse_response(np.random.default_rng(3))
    mic = simulate(answer, np.zeros(0), 0, ir, 130.0, 0.5)
    mic = np.concatenate([np.zeros(RATE_HZ // 2, np.int16), mic])
    reference = EchoReference(keep_s=30.0)
    reference.played(answer, RATE_HZ, T0 + 0.5)
    canceller = EchoCanceller(reference)
    raw, cleaned = run(None, mic), run(canceller, mic)
    assert abs(canceller.stats.delay_ms - 130.0) <= 3.0, canceller.stats
    late = slice(len(raw) // 2, len(raw) - 10)  # after the filter has adapted
    erle_db = 10 * np.log10(energy(raw[late]) / energy(cleaned[late]))
    assert erle_db > 12.0, erle_db


def test_a_step_of_the_capture_clock_keeps_the_filter_aligned(answer: np.ndarray) -> None:
    """The microphone's capture clock corrects its estimate in a 20 ms step halfway (its
    samples did not move): the delay follows the step at once, without a new estimate or
    a filter that learns again, and the echo stays removed."""
    ir = impulse_response(np.random.default_rng(3))
    mic = simulate(answer, np.zeros(0), 0, ir, 130.0, 0.5)
    reference = EchoReference(keep_s=30.0)
    reference.played(answer, RATE_HZ, T0)
    canceller = EchoCanceller(reference)
    chunks = list(chunks_of(mic))
    half = len(chunks) // 2
    raw, cleaned = [], []
    for i, chunk in enumerate(chunks):
        at = T0 + chunk.timestamp_ms / 1000 + (0.02 if i >= half else 0.0)
        stamped = AudioChunk(chunk.pcm, chunk.rate_hz, chunk.timestamp_ms, captured_at=at)
        raw.append(stamped)
        cleaned.append(canceller.process(stamped))
        if i == half - 1:
            found = canceller.stats.delay_updates
    assert abs(canceller.stats.delay_ms - 150.0) <= 3.0, canceller.stats
    assert canceller.stats.delay_updates == found == 1, canceller.stats
    after = slice(half, len(chunks) - 10)
    assert 10 * np.log10(energy(raw[after]) / energy(cleaned[after])) > 12.0


def test_a_settled_canceller_is_not_moved_by_a_small_correction(
        answer: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first estimates took a wall's reflection (22 ms late) for the direct path, and
    the filter settled there; the next ones find the direct path (130 ms). The filter
    holds both: moving it 22 ms would only make it learn again in the middle of the
    answer, so it stays."""
    inject_estimates(monkeypatch, [0.152] * 5 + [0.130] * 100)
    ir = impulse_response(np.random.default_rng(3))
    mic = simulate(answer, np.zeros(0), 0, ir, 130.0, 0.5)
    reference = EchoReference(keep_s=30.0)
    reference.played(answer, RATE_HZ, T0)
    canceller = EchoCanceller(reference)
    raw, cleaned = run(None, mic), run(canceller, mic)
    assert canceller.settled
    assert canceller.stats.delay_updates == 1, canceller.stats
    assert abs(canceller.stats.delay_ms - 152.0) <= 1.0, canceller.stats
    late = slice(len(raw) // 2, len(raw) - 10)
    assert 10 * np.log10(energy(raw[late]) / energy(cleaned[late])) > 12.0


def test_a_longer_echo_path_moves_the_delay(answer: np.ndarray) -> None:
    """Halfway through the answer the echo path gets 100 ms longer: more than the filter
    holds. The echo comes back, the canceller unsettles and the tracker moves the delay."""
    ir = impulse_response(np.random.default_rng(3))
    mic = simulate(answer, np.zeros(0), 0, ir, 130.0, 0.5)
    half = len(mic) // 2
    mic = np.concatenate([mic[:half], np.zeros(RATE_HZ // 10, np.int16), mic[half:]])
    reference = EchoReference(keep_s=30.0)
    reference.played(answer, RATE_HZ, T0)
    canceller = EchoCanceller(reference)
    states = settled_by_chunk(canceller, mic)
    assert canceller.stats.delay_updates == 2, canceller.stats
    # Unsettled by the first second that shows the move (the tracker found the echo
    # elsewhere), not a second later: the echo leaks meanwhile.
    moved = half // CHUNK_SAMPLES
    assert states[moved - 1] and not all(states[moved:moved + int(2.2 / CHUNK_S)]), states
    assert abs(canceller.stats.delay_ms - 230.0) <= 3.0, canceller.stats


def test_a_move_that_removes_less_of_the_echo_is_undone(
        answer: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settled at the echo's delay (130 ms), the tracker then finds the echo 33 ms later,
    again and again (fault injection: on the rig one such move, after 25 minutes of
    answers, left the filter removing 20 dB instead of 60 for minutes). Each move is tried
    beside the filter where it was, which removes far more: it is undone, the canceller
    stays settled, and the echo stays removed throughout."""
    inject_estimates(monkeypatch, [0.130] * 4 + [0.163] * 1000)
    played = np.concatenate([answer, answer])
    ir = impulse_response(np.random.default_rng(3))
    mic = simulate(played, np.zeros(0), 0, ir, 130.0, 0.5)
    reference = EchoReference(keep_s=60.0)
    reference.played(played, RATE_HZ, T0)
    canceller = EchoCanceller(reference)
    raw = run(None, mic)
    states, cleaned = [], []
    for chunk in live(mic):
        cleaned.append(canceller.process(chunk))
        states.append(canceller.settled)
    assert canceller.stats.delay_reverts >= 2 and canceller.stats.delay_updates == 1, \
        canceller.stats
    assert abs(canceller.stats.delay_ms - 130.0) <= 1.0, canceller.stats
    assert all(states[states.index(True):]), states
    late = slice(len(raw) // 2, len(raw) - 10)
    assert 10 * np.log10(energy(raw[late]) / energy(cleaned[late])) > 20.0


def test_the_delay_is_found_where_the_capture_clock_walked_it(answer: np.ndarray) -> None:
    """The capture clock corrects itself in 20 ms steps, always the same way (on the rig
    the delay walked from -120 to -280 ms in 25 minutes of answers). Here it walks from
    -150 to -310 ms, past the range the first estimate searched (-250 to +500 ms): the
    delay follows each step with no move. Then the echo path gets 100 ms shorter, beyond
    the filter: the tracker, searching around the delay in use, finds it at -410 ms, and
    the move is kept (the filter where it was removes nothing of it)."""
    played = np.concatenate([answer, answer, answer])
    ir = impulse_response(np.random.default_rng(3))
    mic = simulate(played, np.zeros(0), 0, ir, 130.0, 0.5)
    cut = 22 * RATE_HZ  # the path gets shorter here: 100 ms of the echo never heard
    mic = np.concatenate([mic[:cut], mic[cut + RATE_HZ // 10:]])
    reference = EchoReference(keep_s=60.0)
    reference.played(played, RATE_HZ, T0 + 0.28)  # the speaker's clock: 150 ms "late"
    canceller = EchoCanceller(reference)
    raw, cleaned = [], []
    step_s, steps, walked = 0.0, 0, None
    for chunk in chunks_of(mic):
        at_s = chunk.timestamp_ms / 1000
        if at_s >= 5.0 + 2.0 * steps and steps < 8:
            steps += 1
            step_s -= 0.02
        stamped = AudioChunk(chunk.pcm, chunk.rate_hz, chunk.timestamp_ms,
                             captured_at=T0 + at_s + step_s)
        raw.append(stamped)
        cleaned.append(canceller.process(stamped))
        if chunk.timestamp_ms + 80 == cut * 1000 // RATE_HZ:
            walked = (canceller.stats.delay_ms, canceller.stats.delay_updates,
                      canceller.settled)
    assert walked is not None and abs(walked[0] + 310.0) <= 3.0 and walked[1:] == (1, True), \
        walked
    assert abs(canceller.stats.delay_ms + 410.0) <= 3.0, canceller.stats
    assert canceller.stats.delay_updates == 2, canceller.stats
    late = slice(len(raw) - int(5 / CHUNK_S), len(raw) - 10)
    assert 10 * np.log10(energy(raw[late]) / energy(cleaned[late])) > 12.0


def test_a_voice_over_the_answer_does_not_unsettle_it(answer: np.ndarray) -> None:
    """The user speaks over the answer (its echo 6 dB louder than their voice): that
    second removes little of the echo (less than ``UNSETTLED_DB``), yet the echo path did
    not move, so the canceller stays settled through their first 1.4 s (one poor second
    alone unsettled it before): the gate that lets them interrupt the answer stays open
    while they speak."""
    ir = impulse_response(np.random.default_rng(5))
    user = flite("What time is it in Tokyo?", "slt").astype(np.float64)
    at = int(9.0 * RATE_HZ)
    mic = simulate(answer, user, at, ir, 60.0, echo_gain(answer, user, ir, 6.0))
    reference = EchoReference(keep_s=30.0)
    reference.played(answer, RATE_HZ, T0)
    canceller = EchoCanceller(reference)
    states = settled_by_chunk(canceller, mic)
    first = states.index(True) * CHUNK_S
    speaking = slice(int(9.0 / CHUNK_S), int(10.4 / CHUNK_S))
    assert first < 9.0 and all(states[speaking]), states


def test_a_user_speaking_long_over_the_answer_does_not_unsettle_it(
        answer: np.ndarray) -> None:
    """Four seconds of the user over the answer (its echo 6 dB louder): four poor seconds
    in a row, which unsettled it before (two in a row did), and speech to text then got the
    suppressor's output from the middle of their words. What the filter left is their
    voice, not the echo (``_echo_left``): it stays settled, the linear output throughout."""
    ir = impulse_response(np.random.default_rng(5))
    user = flite("What time is it in Tokyo? And how tall is the Eiffel Tower?",
                 "slt").astype(np.float64)
    assert len(user) > 3.5 * RATE_HZ
    at = int(7.0 * RATE_HZ)
    assert len(answer) > at + len(user) + RATE_HZ
    mic = simulate(answer, user, at, ir, 60.0, echo_gain(answer, user, ir, 6.0))
    reference = EchoReference(keep_s=30.0)
    reference.played(answer, RATE_HZ, T0)
    canceller = EchoCanceller(reference)
    states = settled_by_chunk(canceller, mic)
    speaking = slice(int(7.0 / CHUNK_S), int((7.0 + len(user) / RATE_HZ) / CHUNK_S) + 13)
    assert states.index(True) * CHUNK_S < 7.0 and all(states[speaking]), states


def test_what_the_filter_left_is_told_from_a_voice(answer: np.ndarray) -> None:
    """``_echo_left``: a second of the echo itself (a filter that lost the path) holds
    the echo; the user's voice with the echo 40 dB under it (a filter that works, under
    double talk) does not."""
    ir = impulse_response(np.random.default_rng(5))
    echo = simulate(answer, np.zeros(0), 0, ir, 60.0, 0.5).astype(np.float64)
    user = flite("What time is it in Tokyo? And how tall is the Eiffel Tower?",
                 "slt").astype(np.float64)
    reference = EchoReference(keep_s=30.0)
    reference.played(answer, RATE_HZ, T0)
    canceller = EchoCanceller(reference, delay_ms=60.0)
    scale = np.sqrt(np.mean(user[:RATE_HZ] ** 2) / np.mean(echo[3 * RATE_HZ:4 * RATE_HZ] ** 2))
    for second in (3, 4, 5):
        at = second * RATE_HZ
        start = T0 + second - 0.060 + canceller.margin_s
        lost = np.clip(echo[at:at + RATE_HZ], -32768, 32767).astype(np.int16)
        voice = np.clip(user[(second - 3) * RATE_HZ:(second - 2) * RATE_HZ]
                        + 0.01 * scale * echo[at:at + RATE_HZ], -32768, 32767).astype(np.int16)
        assert canceller._echo_left(lost, start)
        assert not canceller._echo_left(voice, start)


def test_one_good_second_does_not_settle_it(answer: np.ndarray) -> None:
    """The canceller measures the echo removed over each second (13 chunks) from the chunk
    where the delay was found: after the first second with 20 dB removed it is not yet
    settled (a filter that has just got there is still adapting); after two in a row it
    is."""
    mic = np.concatenate([np.zeros(int(0.13 * RATE_HZ), np.int16), answer // 2])
    reference = EchoReference(keep_s=30.0)
    reference.played(answer, RATE_HZ, T0)
    canceller = EchoCanceller(reference)
    found, states, raw, cleaned = None, [], live(mic), []
    for i, chunk in enumerate(raw):
        cleaned.append(canceller.process(chunk))
        states.append(canceller.settled)
        if found is None and canceller.stats.delay_updates:
            found = i
    assert found is not None
    seconds = range(found, len(raw) - 13, 13)
    good = [10 * np.log10(energy(raw[s:s + 13]) / energy(cleaned[s:s + 13])) >= 20.0
            for s in seconds]
    first = good.index(True)
    assert good[first + 1], good  # the answer goes on: the next second is good too
    end = seconds[first] + 12
    assert not states[end] and states[end + 13], (found, good, states)


def test_speech_to_text_gets_the_suppressed_signal_until_the_filter_has_settled(
        answer: np.ndarray) -> None:
    """Until the filter has settled, what it leaves of the echo is the answer's words, which
    whisper would write down: speech to text gets the suppressed chunk; from then on, the
    linear filter's output (``Cleaned.speech``)."""
    mic = np.concatenate([np.zeros(int(0.13 * RATE_HZ), np.int16), answer // 2])
    reference = EchoReference(keep_s=30.0)
    reference.played(answer, RATE_HZ, T0)
    canceller = EchoCanceller(reference)
    before, after = [], []
    for chunk in live(mic):
        settled = canceller.settled
        cleaned = canceller.clean(chunk)
        (after if settled else before).append(cleaned.speech is cleaned.chunk)
    assert before and after, "it never settled"
    assert all(before) and not any(after)


def test_after_the_users_turn_the_filter_is_rebuilt_from_the_echo_before_it(
        answer: np.ndarray) -> None:
    """The user speaks over the answer (as loud as its echo) 9 s in; the hearing takes them
    down from 0.2 s after their onset (``listening``), and the answer stops 0.5 s after it,
    as the voice loop stops it. The filter adapted under their voice meanwhile; when they
    are done it is rebuilt from the echo kept before they spoke (the last ``GUARD_S`` before
    the decision left out): the next answer's echo is removed from its start, and its first
    second settles the canceller again (not at once: the echo path may have changed)."""
    ir = impulse_response(np.random.default_rng(5))
    user = flite("What time is it in Tokyo? And how far is it from here?", "slt")
    at = int(9.0 * RATE_HZ)
    stop = at + RATE_HZ // 2
    gap = np.zeros(len(user) + RATE_HZ, np.int16)
    played = np.concatenate([answer[:stop], gap, answer])
    second = stop + len(gap)
    gain = echo_gain(answer, user, ir, 0.0)
    mic = simulate(played, (user / gain * 0.5).astype(np.int16), at, ir, 60.0, 0.5)
    echo_alone = simulate(played, np.zeros(0), 0, ir, 60.0, 0.5)[:len(mic)]
    reference = EchoReference(keep_s=60.0)
    reference.played(played, RATE_HZ, T0)
    canceller = EchoCanceller(reference)
    listening = (at + RATE_HZ // 5, at + len(user) + RATE_HZ // 3)
    settled, cleaned = [], []
    for chunk in live(mic):
        start = chunk.timestamp_ms * RATE_HZ // 1000
        canceller.listening = listening[0] <= start < listening[1]
        cleaned.append(canceller.process(chunk).array())
        settled.append((start, canceller.settled))
    assert canceller.rebuilds == 1
    states = [ok for start, ok in settled if second <= start < second + 3 * RATE_HZ]
    assert not states[0] and all(states[int(1.1 / CHUNK_S):]), states
    for half in (0, RATE_HZ // 2):  # from its very start
        part = slice(second + half, second + half + RATE_HZ // 2)
        out = np.concatenate(cleaned)[part].astype(np.float64)
        heard = echo_alone[part].astype(np.float64)
        assert 10 * np.log10(np.sum(heard ** 2) / np.sum(out ** 2)) >= 25.0


def test_the_rebuilt_filter_remembers_nothing_of_the_echo_it_was_trained_on(
        answer: np.ndarray) -> None:
    """The next answer begins with Piper's leading silence, which the microphone hears as
    silence: the rebuilt filter must not subtract an echo of the kept answers' last frames
    from it (a filter whose memory ended with the kept echo left ~-40 dBFS of it there, and
    on the rig its first second of the next answer measured poor)."""
    ir = impulse_response(np.random.default_rng(5))
    user = flite("What time is it in Tokyo? And how far is it from here?", "slt")
    at = int(9.0 * RATE_HZ)
    stop = at + RATE_HZ // 2
    second = stop + len(user) + RATE_HZ
    lead = int(0.3 * RATE_HZ)
    following = np.concatenate([np.zeros(lead, np.int16), answer[:2 * RATE_HZ]])
    played = np.concatenate([answer[:stop], np.zeros(second - stop, np.int16), following])
    gain = echo_gain(answer, user, ir, 0.0)
    mic = simulate(played, (user / gain * 0.5).astype(np.int16), at, ir, 60.0, 0.5)
    reference = EchoReference(keep_s=60.0)
    reference.played(answer[:stop], RATE_HZ, T0)
    canceller = EchoCanceller(reference)
    listening = (at + RATE_HZ // 5, at + len(user) + RATE_HZ // 3)
    cleaned = []
    for chunk in live(mic):
        start = chunk.timestamp_ms * RATE_HZ // 1000
        if second - CHUNK_SAMPLES <= start < second:  # the speaker records it as it plays
            reference.played(following, RATE_HZ, T0 + second / RATE_HZ)
        canceller.listening = listening[0] <= start < listening[1]
        cleaned.append(canceller.process(chunk).array())
    assert canceller.rebuilds == 1
    silent = np.concatenate(cleaned)[second:second + lead]
    assert not np.any(mic[second:second + lead])
    assert np.abs(silent).max() <= 8, np.abs(silent).max()


def test_no_rebuild_after_a_question_asked_in_silence(answer: np.ndarray) -> None:
    """A question asked while nothing plays never reached the filter: nothing to undo."""
    ir = impulse_response(np.random.default_rng(5))
    user = flite("What time is it in Tokyo?", "slt")
    at = len(answer) + 2 * RATE_HZ
    second = at + len(user) + RATE_HZ
    played = np.concatenate([answer, np.zeros(second - len(answer), np.int16), answer])
    mic = simulate(played, user, at, ir, 60.0, 0.5)
    reference = EchoReference(keep_s=60.0)
    reference.played(answer, RATE_HZ, T0)
    canceller = EchoCanceller(reference)
    passed = -1
    for chunk in live(mic):
        start = chunk.timestamp_ms * RATE_HZ // 1000
        if second - CHUNK_SAMPLES <= start < second:  # the speaker records it as it plays
            reference.played(answer, RATE_HZ, T0 + second / RATE_HZ)
            passed = canceller.stats.passed_chunks
        canceller.listening = at <= start < at + len(user) + RATE_HZ // 3
        canceller.process(chunk)
    assert canceller.stats.passed_chunks == passed  # the second answer went through it
    assert passed > len(user) // CHUNK_SAMPLES  # and the question did not
    assert canceller.rebuilds == 0 and canceller.settled


def test_the_user_is_heard_over_an_equally_loud_answer(answer: np.ndarray,
                                                       wake: OpenWakeWordEngine) -> None:
    """"Hey Jarvis" as loud as the assistant's echo: the raw microphone loses it, the cleaned
    one keeps it (the canceller had the first nine seconds of the answer to adapt). One
    room and one moment: bench/barge_in.py measures the share heard."""
    ir = impulse_response(np.random.default_rng(5))
    user = flite("Hey Jarvis.", "slt").astype(np.float64)
    at = int(9.0 * RATE_HZ)
    gain = echo_gain(answer, user, ir, 0.0)
    mic = simulate(answer, user, at, ir, 60.0, gain)
    heard = {}
    for name, use in (("raw", False), ("cleaned", True)):
        reference = EchoReference(keep_s=30.0)
        reference.played(answer, RATE_HZ, T0)
        canceller = EchoCanceller(reference) if use else None
        engine = OpenWakeWordEngine(wake.config)
        heard[name] = any(d is not None and d.confirmed
                          for d in (engine.process(c) for c in run(canceller, mic)))
    assert heard == {"raw": False, "cleaned": True}


def test_nothing_played_means_nothing_done() -> None:
    reference = EchoReference()
    canceller = EchoCanceller(reference)
    mic = (np.random.default_rng(0).standard_normal(RATE_HZ) * 1000).astype(np.int16)
    chunks = [AudioChunk(c.pcm, c.rate_hz, c.timestamp_ms, captured_at=T0 + i * 0.08)
              for i, c in enumerate(chunks_of(mic))]
    assert all(canceller.process(c) is c for c in chunks)
    # A chunk from a file (no capture time) passes untouched too, even while playing.
    reference.played(np.full(RATE_HZ, 1000, np.int16), RATE_HZ, T0)
    file_chunk = AudioChunk(chunks[0].pcm)
    assert canceller.process(file_chunk) is file_chunk
    assert canceller.stats.passed_chunks == len(chunks)
    assert canceller.stats.active_chunks == 0


def test_the_reference_is_continuous_and_bounded() -> None:
    reference = EchoReference(keep_s=1.0)
    block = np.arange(1, 161, dtype=np.int16)
    reference.played(block, RATE_HZ, 10.0)
    # Stated 3 ms late (clock jitter): it continues the last block, nothing lost or repeated.
    reference.played(block, RATE_HZ, 10.01 + 0.003)
    got = reference.window(10.0, 320)
    assert np.array_equal(got, np.concatenate([block, block]))
    # A real jump (the device ran dry for 100 ms) leaves silence in between.
    reference.played(block, RATE_HZ, 10.12)
    assert np.array_equal(reference.window(10.02, 1600)[:1600], np.zeros(1600, np.int16))
    assert np.array_equal(reference.window(10.12, 160), block)
    # Older than the ring: silence, not stale audio.
    reference.played(np.ones(2 * RATE_HZ, np.int16), RATE_HZ, 20.0)
    assert not np.any(reference.window(10.0, 320))
    assert np.all(reference.window(21.5, 160) == 1)


def test_without_the_library_the_error_names_the_package(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> ctypes.CDLL:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(echo, "_lib", None)
    monkeypatch.setattr(echo.ctypes, "CDLL", missing)
    with pytest.raises(AudioDeviceError, match="libspeexdsp1"):
        EchoCanceller(EchoReference())


def test_the_linear_output_is_in_step_with_the_suppressed_one() -> None:
    """Speex's residual suppressor hands each 10 ms frame on one frame late; the linear
    filter's output comes the same frame late, so that speech to text, which switches
    between the two as the canceller settles, neither skips nor repeats 10 ms."""
    rng = np.random.default_rng(0)
    mic = (rng.standard_normal(3 * RATE_HZ) * 3000).astype(np.int16)
    played = (rng.standard_normal(3 * RATE_HZ) * 3000).astype(np.int16)
    speex = echo.SpeexEcho()
    linear, suppressed = (np.concatenate(parts) for parts in zip(*(
        speex.process_both(mic[i:i + CHUNK_SAMPLES], played[i:i + CHUNK_SAMPLES])
        for i in range(0, len(mic), CHUNK_SAMPLES)), strict=True))
    a, b = linear.astype(np.float64), suppressed.astype(np.float64)
    m = RATE_HZ  # one second, from the second second on, shifted either way
    lags = range(-200, 201)
    match = [float(np.dot(a[RATE_HZ:RATE_HZ + m], b[RATE_HZ + lag:RATE_HZ + lag + m]))
             for lag in lags]
    assert lags[int(np.argmax(match))] == 0
