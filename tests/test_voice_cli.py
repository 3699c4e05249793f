"""The voice commands as a user runs them: run on files, demo, say, devices."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
    assert "no wake word ('hey_jarvis') heard" in out.stderr


def test_run_with_missing_input_file(llama_server: RunningServer, tmp_path: Path) -> None:
    out = run(["run", "--input", str(tmp_path / "nope.wav")], client_env(llama_server))
    assert out.returncode == 1
    assert "nope.wav' does not exist" in out.stderr


def test_run_with_missing_wake_word_model(llama_server: RunningServer, tmp_path: Path) -> None:
    env = {**client_env(llama_server), "HEISENBERG_WAKEWORD_MODEL": "/no/such/model.tflite"}
    out = run(["run", "--input", str(tmp_path / "x.wav")], env)
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
