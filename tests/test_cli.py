"""The ``heisenberg`` command as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from heisenberg import __version__
from heisenberg.orchestrator.history import HistoryStore
from tests.conftest import RunningServer, free_port


def run(args: list[str], env: dict[str, str] | None = None, stdin: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    engine = os.environ.get("TEST_LLAMA_ENGINE", "xllamacpp")
    full_env = {**os.environ, "HEISENBERG_CONFIG": "", "HEISENBERG_SERVER_ENGINE": engine,
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "heisenberg", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def client_env(server: RunningServer) -> dict[str, str]:
    return {"HEISENBERG_LLM_URL": server.url, "HEISENBERG_LLM_MAX_TOKENS": "24",
            "HEISENBERG_LLM_TEMPERATURE": "0"}


def test_version() -> None:
    out = run(["--version"])
    assert out.returncode == 0 and out.stdout.strip() == f"heisenberg {__version__}"


def test_ask_streams_the_answer(llama_server: RunningServer) -> None:
    out = run(["ask", "What is the capital of France?"], client_env(llama_server))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert out.stdout == out.stdout.strip() + "\n"  # no padding around the answer


def test_chat_keeps_going_and_resets(llama_server: RunningServer) -> None:
    out = run(["chat"], client_env(llama_server),
              stdin="My name is Zorblax.\n/reset\nWhat is my name?\n/quit\n")
    assert out.returncode == 0, out.stderr
    assert "(history cleared)" in out.stdout
    before, after = out.stdout.split("(history cleared)")
    assert before.strip() and after.strip()


def test_ask_with_unreachable_server_exits_1_with_a_clear_message() -> None:
    out = run(["ask", "hi"], {"HEISENBERG_LLM_URL": f"http://127.0.0.1:{free_port()}"})
    assert out.returncode == 1
    assert out.stderr.count("cannot reach the LLM server") == 1, out.stderr  # said once


def test_ask_in_managed_mode_starts_and_stops_its_own_server(tmp_path: Path) -> None:
    env = {"HEISENBERG_SERVER_PORT": str(free_port()), "HEISENBERG_SERVER_THREADS": "1",
           "HEISENBERG_LLM_MAX_TOKENS": "16"}
    out = run(["ask", "Say hello."], env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    # The child server is gone with the command.
    port = int(env["HEISENBERG_SERVER_PORT"])
    import socket

    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_bad_env_value_exits_2() -> None:
    out = run(["ask", "hi"], {"HEISENBERG_LLM_MAX_TOKENS": "lots"})
    assert out.returncode == 2
    assert "llm.max_tokens" in out.stderr and "'lots'" in out.stderr


def test_history_is_saved_shown_and_cleared(llama_server: RunningServer, tmp_path: Path) -> None:
    env = {**client_env(llama_server), "HEISENBERG_HISTORY_PATH": str(tmp_path / "h.sqlite3")}
    assert run(["ask", "What is the capital of France?"], env).returncode == 0
    assert run(["ask", "And of Spain?"], env).returncode == 0
    # Each one-shot command starts a new conversation, unless it is told to continue.
    assert run(["ask", "--continue", "And of Italy?"], env).returncode == 0
    store = HistoryStore(tmp_path / "h.sqlite3")
    sessions = [session for session, _ in store.recent()]
    store.close()
    assert sessions[0] != sessions[1] and sessions[1] == sessions[2], sessions
    shown = run(["history"], env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line.split("you: ")[1] for line in lines if "you: " in line] == [
        "What is the capital of France?", "And of Spain?", "And of Italy?"]
    assert sum("heisenberg: " in line for line in lines) == 3
    refused = run(["history", "--clear"], env)  # not a terminal, no --yes: nothing deleted
    assert refused.returncode == 1 and "--yes" in refused.stderr
    cleared = run(["history", "--clear", "--yes"], env)
    assert cleared.returncode == 0 and "deleted 3 turns" in cleared.stdout
    assert "no saved turns" in run(["history"], env).stdout
    off = run(["history"], {**env, "HEISENBERG_HISTORY_ENABLED": "false"})
    assert off.returncode == 1 and "history.enabled = false" in off.stderr


def test_options_after_the_command(llama_server: RunningServer, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[llm]\nmax_tokens = 4\n")
    out = run(["ask", "-v", "--config", str(config), "Say hi."], client_env(llama_server))
    assert out.returncode == 0, out.stderr
    assert f"config: {config}" in out.stderr  # -v shows the info line, naming that file


def test_a_bad_environment_value_names_the_variable() -> None:
    out = run(["ask", "hi"], {"HEISENBERG_LLM_TEMPRATURE": "0.5"})
    assert out.returncode == 2
    assert "environment variable HEISENBERG_LLM_TEMPRATURE: llm.temprature: unknown key" \
        in out.stderr


def test_start_llama_server_help_is_only_the_help() -> None:
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([str(root / "start_llama_server.sh"), "--help"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "--model PATH" in out.stdout
    assert "set -euo" not in out.stdout


def test_chat_help_is_not_a_question_and_ctrl_c_ends_it(llama_server: RunningServer) -> None:
    out = run(["chat"], client_env(llama_server), stdin="/help\n/nope\n/quit\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("commands: /reset") == 2 and "unknown command /nope" in out.stdout
    # Questions from a file (not a pipe) work too.
    questions = Path(tempfile.mkdtemp()) / "q.txt"
    questions.write_text("/help\n/quit\n")
    with questions.open() as stdin:
        from_file = subprocess.run([sys.executable, "-m", "heisenberg", "chat"], stdin=stdin,
                                   capture_output=True, text=True, timeout=60,
                                   env={**os.environ, "HEISENBERG_CONFIG": "",
                                        **client_env(llama_server)})
    assert from_file.returncode == 0 and "commands: /reset" in from_file.stdout, from_file
    # Ctrl-C at an empty prompt ends it at once, with no Enter. Its log goes to a file (a
    # pipe nobody reads fills up and blocks the writer) and comes with a failure.
    with tempfile.TemporaryFile("w+") as log:
        # A terminal's Ctrl-C finds SIGINT at its default; a test run started in the
        # background by a shell without job control inherits it ignored (the chat would
        # never see it).
        proc = subprocess.Popen([sys.executable, "-m", "heisenberg", "chat"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=log, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                                env={**os.environ, "HEISENBERG_CONFIG": "",
                                     **client_env(llama_server)})
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("Say hi.\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 60
            while not proc.stdout.readline().strip() and time.monotonic() < deadline:
                pass  # the answer's line: the chat is up and waiting for the next question
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                log.seek(0)
                raise AssertionError("chat did not end on Ctrl-C; its log:\n"
                                     f"{log.read()[-4000:]}") from None
            assert code == 130
        finally:
            proc.kill()
