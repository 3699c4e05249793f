"""Heisenberg as a service: the systemd notify protocol, signals, reload, logs, units.

The daemon runs as a real subprocess (``heisenberg run``) on a spoken WAV fed in real time, with
``NOTIFY_SOCKET`` pointing at a datagram socket of the test's own, the way systemd runs it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from heisenberg.audio.format import RATE_HZ, write_wav
from heisenberg.core.config import HistoryConfig
from heisenberg.orchestrator.history import ConversationTurn, HistoryStore
from heisenberg.service.units import install, render
from heisenberg.voice.tts import PiperTTS
from tests.conftest import NotifySocket, RunningServer, free_port, silence, speech
from tests.test_cli import run


def write_config(path: Path, server: RunningServer, history: Path, extra: str = "",
                 llm: str = 'max_tokens = 24\ntemperature = 0.0') -> None:
    path.write_text(f"""
[llm]
url = "{server.url}"
{llm}
{extra}
[history]
path = "{history}"
[camera]
enabled = false
""")


def start_daemon(config: Path, wav: Path, notify: NotifySocket, tmp_path: Path,
                 ) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NOTIFY_SOCKET": str(notify.path),
           "WATCHDOG_USEC": "1000000", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "heisenberg", "--config", str(config), "run", "--input",
         str(wav), "--realtime", "--output", str(tmp_path / "reply.wav")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def question_wav(tts: PiperTTS, path: Path, question: str, tail_s: float) -> Path:
    write_wav(path, np.concatenate([silence(0.3), speech(tts, "Hey Jarvis."), silence(0.3),
                                    speech(tts, question), silence(tail_s)]), RATE_HZ)
    return path


def stop(proc: subprocess.Popen[str], sig: int, notify: NotifySocket) -> str:
    """Signal the daemon; it must say STOPPING=1 and exit 0 within 5 s. Returns its stderr."""
    proc.send_signal(sig)
    stopping = time.monotonic()
    notify.wait_for(lambda m: "STOPPING=1" in m, 5, "STOPPING=1")
    _, stderr = proc.communicate(timeout=10)
    stopped_s = time.monotonic() - stopping
    assert proc.returncode == 0, stderr
    assert stopped_s < 5.0, f"stopped in {stopped_s:.1f} s"
    return stderr


def saved_turn(history: Path) -> ConversationTurn:
    """The one turn the daemon saved."""
    store = HistoryStore.from_config(HistoryConfig(path=str(history)))
    [(_, turn)] = store.recent()
    store.close()
    return turn


def test_daemon_notifies_systemd_reloads_and_stops_cleanly(
        llama_server: RunningServer, tts: PiperTTS, tmp_path: Path,
        notify: NotifySocket) -> None:
    config, history = tmp_path / "config.toml", tmp_path / "history.sqlite3"
    write_config(config, llama_server, history)
    wav = question_wav(tts, tmp_path / "q.wav", "What is the capital of France?", 60)
    proc = start_daemon(config, wav, notify, tmp_path)
    try:
        ready = notify.wait_for(lambda m: "READY=1" in m, 60, "READY=1")
        assert "STATUS=idle, listening for hey_jarvis" in ready and "MAINPID=" in ready
        # One turn, each state reported as it happens.
        for state in ("listening", "thinking", "speaking", "idle (answered)"):
            notify.wait_for(lambda m, s=state: m.startswith(f"STATUS={s}"), 60, state)
        notify.wait_for(lambda m: m == "WATCHDOG=1", 5, "a watchdog ping")

        config.write_text("[llm\nbroken = ")  # SIGHUP with a bad file: the old config stays
        proc.send_signal(signal.SIGHUP)
        notify.wait_for(lambda m: "config reload failed" in m, 10, "failed reload")
        config.write_bytes(b'[llm]\nsystem_prompt = "caf\xe9"\n')  # not UTF-8
        notify.messages.clear()  # wait for this reload's answer, not the last one's
        proc.send_signal(signal.SIGHUP)
        notify.wait_for(lambda m: "READY=1" in m and "config reload failed" in m, 10,
                        "failed reload (bad UTF-8)")
        write_config(config, llama_server, history,
                     'personality = "concise"\n[stt]\nbeam_size = 2\n')
        proc.send_signal(signal.SIGHUP)
        notify.wait_for(lambda m: "STATUS=config reloaded" in m, 10, "reload")
        assert proc.poll() is None

        stderr = stop(proc, signal.SIGTERM, notify)
    finally:
        proc.kill()
    # Logs: one structured line per event, with the turn id, and no transcript (privacy).
    lines = stderr.splitlines()
    transcript = next(line for line in lines if "event=transcription_final" in line)
    assert "turn=" in transcript and "text_chars=" in transcript
    assert "capital" not in stderr.lower() and "paris" not in stderr.lower()
    assert any("config reload failed, keeping the running config" in line for line in lines)
    assert any("not valid UTF-8" in line for line in lines)
    assert any("stt.beam_size changed" in line and "after a restart" in line for line in lines)
    turn = saved_turn(history)
    assert "capital of france" in turn.user.lower() and turn.assistant


def test_sigint_mid_answer_stops_within_5_s_and_keeps_what_was_said(
        llama_server: RunningServer, tts: PiperTTS, tmp_path: Path,
        notify: NotifySocket) -> None:
    config, history = tmp_path / "config.toml", tmp_path / "history.sqlite3"
    # The gemma prompt format makes this base model talk on and on: a long answer to cut.
    api_port = free_port()
    write_config(config, llama_server, history,
                 f"[log]\ntranscripts = true\n[api]\nenabled = true\nport = {api_port}\n",
                 llm='prompt_format = "gemma"\nmax_tokens = 400\ntemperature = 0.7')
    wav = question_wav(tts, tmp_path / "q.wav", "Tell me a long story about a dragon.", 60)
    proc = start_daemon(config, wav, notify, tmp_path)
    try:
        notify.wait_for(lambda m: m.startswith("STATUS=speaking"), 90, "speaking")
        # The daemon's API answers while it speaks, and reports its devices.
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v1/health",
                                    timeout=5) as resp:
            health = json.load(resp)
        assert health["status"] == "ok" and health["state"] == "speaking"
        assert health["microphone"] == "file:q.wav: ok" and health["camera"] == "disabled"
        stderr = stop(proc, signal.SIGINT, notify)
    finally:
        proc.kill()
    assert "dragon" in stderr.lower()  # log.transcripts = true puts the text in the log
    turn = saved_turn(history)
    assert turn.interrupted and "dragon" in turn.user.lower()


def test_units_and_install_service(tmp_path: Path) -> None:
    system = render("heisenberg.service", user=False, llm_unit=False, python="/venv/bin/python",
                    run_as="alice")
    assert "Type=notify" in system and "WatchdogSec=" in system
    assert "ExecStart=/venv/bin/python -m heisenberg run" in system
    assert "Restart=on-failure" in system and "ExecReload=/bin/kill -HUP $MAINPID" in system
    assert "User=alice" in system and "WantedBy=multi-user.target" in system
    assert "@" not in system.replace("$MAINPID", "")  # every placeholder filled
    done = install(user=True, llm_unit=True, directory=tmp_path)
    main, llm = (tmp_path / "heisenberg.service").read_text(), (
        tmp_path / "heisenberg-llm.service").read_text()
    assert "\nUser=" not in main and "WantedBy=default.target" in main
    assert "After=network.target sound.target heisenberg-llm.service" in main
    assert "-m heisenberg llm-server" in llm and "Type=notify" in llm
    assert "systemctl --user enable --now heisenberg-llm.service heisenberg.service" in (
        done.commands)


def test_check_all_good(pulse: None, llama_server: RunningServer, tmp_path: Path) -> None:
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), np.full((120, 160, 3), 200, np.uint8))
    out = run(["check"], {"HEISENBERG_LLM_URL": llama_server.url,
                          "HEISENBERG_CAMERA_SOURCE": str(image)})
    rows = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("config", "wake", "speech-to-text", "text-to-speech", "microphone", "speaker",
                 "camera", "history"):
        assert " OK " in rows[name], rows[name]
    assert "model loaded" in rows["LLM"] and "160x120" in rows["camera"]
    assert " WARN " in rows["vision"]  # gemma3-270m without an mmproj cannot see
    assert out.stdout.strip().endswith("0 problem(s), 1 warning(s)")


def test_check_reports_each_problem_with_a_fix(tmp_path: Path) -> None:
    out = run(["check"], {"HEISENBERG_LLM_URL": f"http://127.0.0.1:{free_port()}",
                          "HEISENBERG_WAKEWORD_MODEL": str(tmp_path / "missing.tflite"),
                          "HEISENBERG_CAMERA_SOURCE": str(tmp_path / "no-camera.mp4"),
                          "PULSE_SERVER": "unix:/nonexistent"})
    assert out.returncode == 1
    text = out.stdout
    rows = {line.split()[0]: line for line in text.splitlines() if line[:1].isalpha()}
    assert " FAIL " in rows["wake"] and "missing.tflite" in rows["wake"]
    assert " FAIL " in rows["LLM"] and "unreachable" in rows["LLM"]
    assert " WARN " in rows["camera"]
    assert " OK " in rows["speech-to-text"] and " OK " in rows["text-to-speech"]
    assert text.count("fix: ") >= 3
