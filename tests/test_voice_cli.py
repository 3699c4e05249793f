"""The voice commands as a user runs them: run on files, demo, say, devices."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heisenberg.audio.format import RATE_HZ, read_wav, write_wav
from heisenberg.voice.tts import PiperTTS
from tests.conftest import RunningServer, free_port, silence, speech
from tests.test_cli import client_env, run


def test_run_on_files(llama_server: RunningServer, tts: PiperTTS, tmp_path: Path) -> None:
    question = tmp_path / "question.wav"
    write_wav(question, np.concatenate([speech(tts, "Hey Jarvis."), silence(0.3),
                                        speech(tts, "How many legs does a spider have?")]),
              RATE_HZ)
    reply = tmp_path / "reply.wav"
    out = run(["run", "--input", str(question), "--output", str(reply)],
              client_env(llama_server))
    assert out.returncode == 0, out.stderr
    assert "you: How many legs does a spider have?" in out.stdout
    assert "heisenberg: " in out.stdout and "latency: end of speech -> transcript" in out.stdout
    assert len(read_wav(reply)) > RATE_HZ // 2


def test_run_without_wake_word_says_so(llama_server: RunningServer, tts: PiperTTS,
                                       tmp_path: Path) -> None:
    question = tmp_path / "no_wake.wav"
    write_wav(question, speech(tts, "What is the capital of France?"), RATE_HZ)
    out = run(["run", "--input", str(question), "--output", str(tmp_path / "r.wav")],
              client_env(llama_server))
    assert out.returncode == 1
    assert "no wake word (hey_jarvis) heard" in out.stderr


def test_run_with_missing_input_file(llama_server: RunningServer, tmp_path: Path) -> None:
    out = run(["run", "--input", str(tmp_path / "nope.wav")], client_env(llama_server))
    assert out.returncode == 1
    assert "nope.wav' does not exist" in out.stderr


def test_run_with_missing_wake_word_model(llama_server: RunningServer, tmp_path: Path) -> None:
    env = {**client_env(llama_server), "HEISENBERG_WAKEWORD_MODEL": "/no/such/model.tflite"}
    wav = tmp_path / "x.wav"
    write_wav(wav, silence(1.0), RATE_HZ)
    out = run(["run", "--input", str(wav)], env)
    assert out.returncode == 1
    assert "wakeword.model: '/no/such/model.tflite' is neither a built-in model" in out.stderr


def test_demo_runs_the_whole_pipeline_in_managed_mode(tmp_path: Path) -> None:
    reply = tmp_path / "demo.wav"
    history = tmp_path / "history.sqlite3"
    env = {"HEISENBERG_SERVER_PORT": str(free_port()), "HEISENBERG_SERVER_THREADS": "1",
           "HEISENBERG_LLM_MAX_TOKENS": "24", "HEISENBERG_HISTORY_PATH": str(history)}
    out = run(["demo", "--output", str(reply)], env, timeout=240)
    assert out.returncode == 0, out.stderr
    assert not history.exists()  # the demo is not the user's conversation
    assert "you: What is the capital of France?" in out.stdout
    assert "heisenberg: " in out.stdout
    assert "latency: end of speech -> transcript" in out.stdout
    assert len(read_wav(reply)) > RATE_HZ // 2


def test_say_writes_speech(tmp_path: Path) -> None:
    out_wav = tmp_path / "say.wav"
    out = run(["say", "Hello **there**! Nice to meet you.", "--output", str(out_wav)])
    assert out.returncode == 0, out.stderr
    samples = read_wav(out_wav, 22050)
    assert len(samples) > 22050 and np.abs(samples).max() > 1000


def test_devices_lists_what_there_is() -> None:
    out = run(["devices"])
    assert out.returncode == 0, out.stderr
    assert "audio devices:" in out.stdout and "cameras:" in out.stdout


def no_portaudio(tmp_path: Path) -> dict[str, str]:
    """An environment where ``import sounddevice`` fails the way it does without Debian's
    libportaudio2 (fault injection: the library cannot be uninstalled for one test)."""
    fake = tmp_path / "fake_site"
    fake.mkdir()
    (fake / "sounddevice.py").write_text('raise OSError("PortAudio library not found")\n')
    return {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "HEISENBERG_SERVER_MODEL_PATH": str(tmp_path / "never-loaded.gguf")}


@pytest.mark.parametrize("args", [["run"], ["say", "hello"]])
def test_without_portaudio_one_line_and_exit_1_before_anything_starts(
        tmp_path: Path, args: list[str]) -> None:
    env = no_portaudio(tmp_path)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("INVOCATION_ID", None)
    done = subprocess.run([sys.executable, "-m", "heisenberg", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done
    # The model path is bogus: had anything started, the error would be about the model.
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1:] == [
        "heisenberg: the PortAudio library is missing: install Debian's libportaudio2 "
        "(sudo apt install libportaudio2)"]


def test_run_with_a_missing_input_fails_before_anything_starts(tmp_path: Path) -> None:
    env = no_portaudio(tmp_path)  # a file run needs no PortAudio either
    done = subprocess.run([sys.executable, "-m", "heisenberg", "run", "--input",
                           str(tmp_path / "missing.wav"), "--output", str(tmp_path / "a.wav")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1:] == [
        f"heisenberg: --input {str(tmp_path / 'missing.wav')!r} does not exist"]
