"""Heisenberg as a service: the systemd notify protocol, signals, reload, logs, units.

The daemon runs as a real subprocess (``heisenberg run``) on a spoken WAV fed in real time, with
``NOTIFY_SOCKET`` pointing at a datagram socket of the test's own, the way systemd runs it.
"""

from __future__ import annotations

import http.client
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
    assert "After=network.target sound.target\n" in system and "Wants=" not in system
    config = tmp_path / "my config.toml"
    done = install(user=True, llm_unit=True, directory=tmp_path, config=config)
    main, llm = (tmp_path / "heisenberg.service").read_text(), (
        tmp_path / "heisenberg-llm.service").read_text()
    assert "\nUser=" not in main and "WantedBy=default.target" in main
    # A user manager has no network.target or sound.target: only the LLM unit to wait for.
    assert "After=heisenberg-llm.service\nWants=heisenberg-llm.service\n" in main
    assert "After=" not in llm and "network.target" not in main + llm
    for unit in (main, llm):  # both read the same config, neither downloads models
        assert f"-m heisenberg --config '{config}' " in unit
        assert "HF_HUB_OFFLINE=1" in unit
        assert "@" not in unit.replace("$MAINPID", "")
    assert "-m heisenberg --config" in llm and "llm-server" in llm and "Type=notify" in llm
    # Written to a folder of the user's choice: the first step puts them in place.
    assert done.commands[0].startswith(f"cp {tmp_path}/heisenberg.service ")
    assert done.commands[0].endswith("/systemd/user/")
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


def test_no_microphone_is_a_ready_degraded_daemon_that_retries(
        llama_server: RunningServer, tmp_path: Path, notify: NotifySocket) -> None:
    """As systemd starts it on a machine where the microphone is missing: READY (no restart
    loop), STATUS and /health say what is missing, and it keeps retrying."""
    config, history = tmp_path / "config.toml", tmp_path / "history.sqlite3"
    api_port = free_port()
    write_config(config, llama_server, history,
                 f'[audio]\ninput_device = "no-such-microphone-xyz"\n'
                 f'output_device = "no-such-speaker-xyz"\n[api]\nenabled = true\n'
                 f"port = {api_port}\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NOTIFY_SOCKET": str(notify.path),
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "heisenberg", "--config", str(config),
                             "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        ready = notify.wait_for(lambda m: "READY=1" in m, 90, "READY=1")
        assert "no-such-microphone-xyz" in ready and "retrying" in ready, ready
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v1/health",
                                    timeout=5) as resp:
            health = json.load(resp)
        assert health["status"] == "degraded" and health["llm"]["model_loaded"]
        assert health["microphone"].startswith("mic:no-such-microphone-xyz: error: ")
        assert health["camera"] == "disabled"
        stderr = stop(proc, signal.SIGTERM, notify)
    finally:
        proc.kill()
    assert "no-such-microphone-xyz" in stderr


def test_sigterm_ends_a_streamed_answer_with_an_error_event_and_exits_0(
        llama_server: RunningServer, tmp_path: Path, notify: NotifySocket) -> None:
    """A WAV with no wake word (a run that heard nothing) stopped by SIGTERM is a clean stop
    (0), and an API client in the middle of a streamed answer is told why it ends."""
    config, history = tmp_path / "config.toml", tmp_path / "history.sqlite3"
    api_port = free_port()
    write_config(config, llama_server, history, f"[api]\nenabled = true\nport = {api_port}\n",
                 llm='prompt_format = "gemma"\nmax_tokens = 400\ntemperature = 0.7')
    wav = tmp_path / "silence.wav"
    write_wav(wav, silence(60.0), RATE_HZ)
    proc = start_daemon(config, wav, notify, tmp_path)
    try:
        notify.wait_for(lambda m: "READY=1" in m, 60, "READY=1")
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/api/v1/ask", method="POST",
            data=json.dumps({"text": "Tell me a long story about a dragon.",
                             "stream": True}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.readline().startswith(b"data: ")  # the answer is streaming
            proc.send_signal(signal.SIGTERM)
            try:
                rest = resp.read().decode()
            except http.client.IncompleteRead as exc:  # reported with what came before it
                raise AssertionError(f"the stream was cut: {exc.partial[-300:]!r}") from exc
        assert "event: error" in rest and "stopping" in rest, rest[-300:]
        assert "event: done" not in rest
        stop_wait = proc.wait(timeout=10)
        assert stop_wait == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()


def test_install_service_hint_names_the_configured_port(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[server]\nport = 9099\n")
    out = run(["install-service", "--user", "--llm-unit", "--dir", str(tmp_path / "units"),
               "--config", str(config)])
    assert out.returncode == 0, out.stderr
    assert 'llm.url = "http://127.0.0.1:9099"' in out.stdout and "8088" not in out.stdout
    assert f"--config {config}" in (tmp_path / "units" / "heisenberg-llm.service").read_text()
