"""``heisenberg listen``: the daemon's hearing path alone, its JSON schema and exit codes, on
real models and a voice the defaults were not tuned on; and ``say --seed``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heisenberg.audio.format import RATE_HZ, write_wav
from tests.conftest import flite, silence

EVENTS = {"wake", "speech_start", "pause", "speech_end", "no_speech", "transcript",
          "continued"}


def listen(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heisenberg", "listen", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def session_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """Three turns on one stream: a question; the wake word then silence; a question the
    file cuts off. And where each part ends, in seconds."""
    parts = [silence(1.0), flite("Hey Jarvis, what time is it?", "kal"), silence(2.0)]
    first_end = sum(map(len, parts)) / RATE_HZ - 2.0
    parts += [flite("Hey Jarvis.", "kal"), silence(6.0)]
    parts += [flite("Hey Jarvis, tell me a long story about a dragon", "kal")]
    path = tmp_path_factory.mktemp("listen") / "session.wav"
    audio = np.concatenate(parts)
    write_wav(path, audio, RATE_HZ)
    return path, {"first_end": first_end, "total": len(audio) / RATE_HZ}


def test_listen_json_is_one_object_per_line_in_audio_time(
        session_wav: tuple[Path, dict[str, float]]) -> None:
    path, when = session_wav
    out = listen("--input", str(path), "--json")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert records and all(r["event"] in EVENTS for r in records)
    assert all(isinstance(r["audio_s"], float) and "turn" in r for r in records)
    times = [r["audio_s"] for r in records]
    assert times == sorted(times) and times[-1] <= when["total"] + 0.01
    confirmed = [r for r in records if r["event"] != "pause"
                 and (r["event"] != "wake" or r["confirmed"])]
    pauses = [r for r in records if r["event"] == "pause"]
    # The first question's pause: a finished sentence, judged on its early transcript.
    assert pauses and "time" in pauses[0]["text"].lower() and not pauses[0]["unfinished"]
    by_turn: dict[str, list[str]] = {}
    for r in confirmed:
        by_turn.setdefault(r["turn"], []).append(r["event"])
    assert list(by_turn.values()) == [
        ["wake", "speech_start", "speech_end", "transcript"],
        ["wake", "no_speech"],
        ["wake", "speech_start", "speech_end", "transcript"]], records
    wake = confirmed[0]
    assert wake["model"] == "hey_jarvis" and wake["confirmed"] is True
    assert 0.0 < wake["score"] <= 1.0 and 0.0 <= wake["verifier"] <= 1.0
    assert wake["stage"] == "verifier" and "heard" not in wake
    ends = [r for r in confirmed if r["event"] == "speech_end"]
    assert [e["reason"] for e in ends] == ["silence", "end_of_input"]
    # The first end is decided end_silence_ms (300) after the last word, in audio time
    # (less the 80 ms chunk Silero's last voiced frame falls in).
    assert when["first_end"] + 0.2 <= ends[0]["audio_s"] <= when["first_end"] + 1.2
    assert ends[1]["audio_s"] == pytest.approx(when["total"], abs=0.09)
    texts = [r["text"] for r in confirmed if r["event"] == "transcript"]
    assert "time" in texts[0].lower() and "jarvis" not in texts[0].lower()
    assert "dragon" in texts[1].lower()
    # Audio time, not the machine's: a second run prints the same thing.
    assert listen("--input", str(path), "--json").stdout == out.stdout


def test_listen_shows_a_question_that_went_on(tmp_path: Path) -> None:
    """The end comes in a pause after a finished-sounding first half; the speaker goes on
    within ``stt.resume_window_ms``: a ``continued`` turn hears the whole question."""
    path = tmp_path / "paused.wav"
    write_wav(path, np.concatenate([
        silence(1.0), flite("Hey Jarvis, describe what you see on my desk,", "rms"),
        silence(1.2), flite("starting with the objects on the left.", "rms"),
        silence(3.0)]), RATE_HZ)
    out = listen("--input", str(path), "--json")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert all(r["event"] in EVENTS for r in records)
    [went_on] = [r for r in records if r["event"] == "continued"]
    texts = {r["turn"]: r["text"].lower() for r in records if r["event"] == "transcript"}
    assert list(texts) == [went_on["continues"], went_on["turn"]], records
    first, whole = texts.values()
    assert "desk" in first and "left" not in first, first
    assert "desk" in whole and "left" in whole and "jarvis" not in whole, whole
    assert [r["event"] for r in records
            if r["turn"] == went_on["turn"] and r["event"] != "pause"] == [
        "continued", "speech_start", "speech_end", "transcript"], records


def test_listen_shows_what_stage_3_heard(
        session_wav: tuple[Path, dict[str, float]], tmp_path: Path) -> None:
    """With a verifier that cannot be sure enough (its threshold at 1), a wake word is
    confirmed only by stage 3: the acoustic check (turned on), which gives its probability,
    or whisper's words, which say what they heard, confirmed or not."""
    from heisenberg.voice.verifier import bundled_phrase_check

    acoustic = bundled_phrase_check("hey_jarvis")
    assert acoustic is not None
    config = tmp_path / "config.toml"
    config.write_text("[wakeword]\nverifier_threshold = 1.0\nacoustic_check = true\n")
    out = listen("--config", str(config), "--input", str(session_wav[0]), "--json")
    assert out.returncode == 0, out.stderr
    checked = [r for line in out.stdout.splitlines()
               if (r := json.loads(line))["event"] == "wake"]
    assert all(isinstance(w["check"], float) for w in checked), out.stdout
    assert all(isinstance(w["heard"], str) for w in checked if "heard" in w), out.stdout
    wakes = [w for w in checked if w["confirmed"]]
    assert len(wakes) >= 2, out.stdout
    for w in wakes:
        assert (w["stage"] == "acoustic" and w["check"] >= acoustic.threshold) or (
            w["stage"] == "transcript" and "jarvis" in w["heard"].lower()), w
    texts = [json.loads(line)["text"] for line in out.stdout.splitlines()
             if json.loads(line)["event"] == "transcript"]
    assert "time" in texts[0].lower() and "jarvis" not in texts[0].lower()
    human = listen("--config", str(config), "--input", str(session_wav[0]))
    assert ", check " in human.stdout, human.stdout


def test_listen_reads_like_a_log_without_json(session_wav: tuple[Path, dict[str, float]]
                                              ) -> None:
    out = listen("--input", str(session_wav[0]))
    assert out.returncode == 0, out.stderr
    assert "wake word: hey_jarvis" in out.stdout and "speech ended (silence)" in out.stdout
    assert "woken, but nobody spoke" in out.stdout and "heard: " in out.stdout


def test_listen_exit_codes_name_the_problem(tmp_path: Path) -> None:
    missing = listen("--input", str(tmp_path / "none.wav"), "--json")
    assert missing.returncode == 1 and "none.wav" in missing.stderr and not missing.stdout
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF nonsense")
    bad = listen("--input", str(junk))
    assert bad.returncode == 1 and "junk.wav" in bad.stderr
    config = tmp_path / "config.toml"
    config.write_text("[wakeword]\nthreshold = 3\n")
    wrong = listen("--config", str(config), "--input", str(junk))
    assert wrong.returncode == 2 and "wakeword.threshold" in wrong.stderr


async def test_listen_on_a_real_microphone(pulse: None) -> None:
    """On the real-time PulseAudio device: someone says it into the room, ``listen --json``
    hears it through the microphone (the null sink's monitor). The phrase is said again
    every few seconds until heard: the microphone opens a moment after listen says so."""
    import asyncio

    from heisenberg.audio.format import AudioChunk
    from heisenberg.audio.sinks import SpeakerSink
    from heisenberg.core.tasks import cancel_and_wait

    proc = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-m", "heisenberg", "listen", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    user = SpeakerSink(rate_hz=RATE_HZ)
    said = np.concatenate([flite("Hey Jarvis, what time is it?", "kal"), silence(2.5)])

    async def speak() -> None:
        while True:
            await user.play(AudioChunk(said.tobytes(), RATE_HZ))

    speaking = None
    records: list[dict[str, object]] = []
    try:
        assert proc.stderr is not None and proc.stdout is not None
        async with asyncio.timeout(120):
            while "listening for hey_jarvis" not in await asyncio.to_thread(
                    proc.stderr.readline):
                assert proc.poll() is None, "listen exited"
        speaking = asyncio.create_task(speak())
        async with asyncio.timeout(120):
            while not records or records[-1]["event"] != "transcript":
                line = await asyncio.to_thread(proc.stdout.readline)
                assert line, "listen stopped"
                records.append(json.loads(line))
    finally:
        await cancel_and_wait(speaking, 10.0)
        proc.kill()
        await asyncio.to_thread(proc.wait, 10)
        await user.close()
    turn = records[-1]["turn"]
    events = [r["event"] for r in records if r["turn"] == turn and r["event"] != "pause"]
    assert events == ["wake", "speech_start", "speech_end", "transcript"], records
    assert "time" in str(records[-1]["text"]).lower()


def test_say_with_a_seed_renders_the_same_audio(tmp_path: Path) -> None:
    def say(seed: str, name: str) -> bytes:
        subprocess.run([sys.executable, "-m", "heisenberg", "say", "--seed", seed, "--output",
                        str(tmp_path / name), "Hey Jarvis."], check=True, timeout=120,
                       capture_output=True)
        return (tmp_path / name).read_bytes()

    assert say("3", "a.wav") == say("3", "b.wav") != say("4", "c.wav")
