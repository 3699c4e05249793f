"""Faults the daemon must live through: a history file that is locked, corrupt or cannot be
opened; failed turns; the managed llama.cpp server dying mid-answer or outliving a killed
daemon; and who may talk to that server."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from heisenberg.core.config import Config, HistoryConfig, LLMConfig
from heisenberg.core.errors import LLMConnectionError
from heisenberg.core.events import ErrorEvent, Event, EventType, LLMToken
from heisenberg.llm.server import port_in_use
from heisenberg.main import Runtime
from heisenberg.orchestrator.history import ConversationTurn, HistoryStore
from tests.conftest import MakeAPI, RunningServer, free_port, make_server_config
from tests.test_security import request


class Errors:
    def __init__(self) -> None:
        self.events: list[ErrorEvent] = []

    async def __call__(self, event: Event) -> None:
        assert isinstance(event, ErrorEvent)
        self.events.append(event)


async def test_a_locked_history_loses_no_answer_and_catches_up(make_api: MakeAPI,
                                                               tmp_path: Path) -> None:
    api = await make_api()
    errors = Errors()
    api.bus.subscribe(errors, [EventType.ERROR], name="errors")
    path = tmp_path / "h0.sqlite3"
    assert path.exists()
    backup = sqlite3.connect(path, isolation_level=None)  # a backup holding the file
    backup.execute("BEGIN EXCLUSIVE")
    answers = []
    for question in ("What is the capital of France?", "And of Italy?"):
        status, body, _ = await request(api, "POST", "/api/v1/ask", json={"text": question})
        assert status == 200 and body["answer"].strip() and body["error"] is None, body
        answers.append(body)
    assert str(api.assistant.state) == "idle"
    status, health, _ = await request(api, "GET", "/api/v1/health")
    assert status == 200 and health["status"] == "degraded", health
    assert health["history"]["saving"] is False and "locked" in health["history"]["detail"]
    assert health["history"]["unsaved_turns"] == 2
    await api.bus.drain()
    assert [e.code for e in errors.events] == ["history"]  # reported once, not per turn
    # Nothing is lost meanwhile: /history shows the unsaved turns too.
    status, history, _ = await request(api, "GET", "/api/v1/history")
    assert [t["turn_id"] for t in history["turns"]] == [a["turn_id"] for a in answers]

    backup.rollback()
    backup.close()
    status, health, _ = await request(api, "GET", "/api/v1/health")
    assert health["status"] == "ok" and health["history"]["unsaved_turns"] == 0, health
    store = HistoryStore(path)
    saved = store.recent()
    store.close()
    assert [t.turn_id for _, t in saved] == [a["turn_id"] for a in answers]
    assert [t.assistant for _, t in saved] == [a["answer"] for a in answers]


def corrupt_page(path: Path) -> None:
    """Overwrite the middle of a SQLite file (its data pages, not the header)."""
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.seek(size // 2)
        file.write(b"\xde\xad\xbe\xef" * 1024)


@pytest.mark.parametrize("damage", ["header", "page", "truncated"])
def test_an_unreadable_store_is_moved_aside(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "history.sqlite3"
    store = HistoryStore(path)
    for i in range(300):
        store.append(ConversationTurn(f"question {i} " * 20, f"answer {i} " * 40, time.time()),
                     "s")
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    if damage == "header":
        path.write_bytes(b"this is not a database at all" * 100)
    elif damage == "page":
        corrupt_page(path)
    else:
        with path.open("r+b") as file:
            file.truncate(path.stat().st_size // 3)
    store = HistoryStore(path)
    try:
        assert store.moved_aside is not None and store.moved_aside.exists()
        assert store.moved_aside.name.startswith("history.sqlite3.corrupt-")
        assert store.count() == 0
        store.append(ConversationTurn("new", "turn", time.time()), "s")
        assert [t.user for _, t in store.recent()] == ["new"]
    finally:
        store.close()


async def test_the_assistant_starts_without_a_usable_store(llama_server: RunningServer,
                                                           tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = Config(llm=LLMConfig(url=llama_server.url, max_tokens=8, temperature=0.0),
                    history=HistoryConfig(path=str(blocker / "history.sqlite3")))
    async with Runtime(config) as rt:
        session = rt.assistant.session
        assert session.store is None and session.store_error is not None
        assert "kept in memory" in session.store_error
        outcome = await rt.assistant.ask("What is the capital of France?")
        assert outcome.error is None and outcome.answer.strip()
        assert [t.turn_id for t in session.get_conversation_history()] == [outcome.turn_id]


async def test_a_failed_turn_is_saved_with_its_outcome(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    dead = f"http://127.0.0.1:{free_port()}"
    config = Config(llm=LLMConfig(url=dead, max_retries=0, connect_timeout_s=1.0),
                    history=HistoryConfig(path=str(path)))
    async with Runtime(config) as rt:
        outcome = await rt.assistant.ask("Is anyone there?")
        assert isinstance(outcome.error, LLMConnectionError)
        assert rt.assistant.session.prompt_history() == []  # no answer to build on
    store = HistoryStore(path)
    [(_, turn)] = store.recent()
    store.close()
    assert (turn.turn_id, turn.user, turn.outcome) == (outcome.turn_id, "Is anyone there?",
                                                       "failed")


async def test_the_managed_server_is_heisenbergs_alone_and_its_death_is_told_plainly(
        tmp_path: Path) -> None:
    config = Config(server=make_server_config(), history=HistoryConfig(
                        path=str(tmp_path / "h.sqlite3")),
                    llm=LLMConfig(max_tokens=200, temperature=0.0, max_retries=0))
    async with Runtime(config) as rt:
        assert rt.server is not None
        url = rt.server.url
        outcome = await rt.assistant.ask("Say hello.")
        assert outcome.error is None and outcome.answer.strip()
        # A web page (or any other program) without the key gets nothing out of it.
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Origin": "http://evil.example"}):
                async with session.post(url + "/completion", headers=headers,
                                        json={"prompt": "hi", "n_predict": 2}) as resp:
                    assert resp.status == 401
                    assert resp.headers.get("Access-Control-Allow-Origin") in (None, "")
            async with session.options(url + "/completion", headers={
                    "Origin": "http://evil.example",
                    "Access-Control-Request-Method": "POST"}) as resp:
                assert resp.headers.get("Access-Control-Allow-Origin") in (None, "")
        assert rt.server.api_key not in " ".join(rt.server._command)  # not in `ps`

        # The server dies in the middle of an answer.
        first_token = asyncio.Event()

        async def on_token(event: Event) -> None:
            assert isinstance(event, LLMToken)
            first_token.set()

        rt.bus.subscribe(on_token, [EventType.LLM_TOKEN], name="tokens")
        pid = rt.server.pid
        assert pid is not None
        turn = asyncio.create_task(rt.assistant.ask(
            "Write a long story about a dragon who learns to bake bread."))
        await asyncio.wait_for(first_token.wait(), 60)
        os.kill(pid, signal.SIGKILL)
        outcome = await asyncio.wait_for(turn, 60)
        assert isinstance(outcome.error, LLMConnectionError), outcome.error
        message = outcome.error.message
        assert "language model server" in message and "stopped" in message, message
        assert "TransferEncodingError" not in message and "payload" not in message.lower()
        saved = rt.assistant.session.get_conversation_history()[-1]
        assert saved.outcome == "failed" and saved.turn_id == outcome.turn_id
        # It comes back, and so does the assistant.
        async with asyncio.timeout(90):
            while rt.server.restarts == 0:
                await asyncio.sleep(0.1)
        outcome = await rt.assistant.ask("Say hello.")
        assert outcome.error is None and outcome.answer.strip()


CHILD = """
import asyncio, sys
from heisenberg.core.config import ServerConfig
from heisenberg.llm.server import ManagedLlamaServer
async def main():
    async with ManagedLlamaServer(ServerConfig(port={port}, threads=1, n_ctx=512,
                                               engine="xllamacpp")) as server:
        print(server.pid, flush=True)
        await asyncio.sleep(3600)
asyncio.run(main())
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; its parent (the test) has not reaped it yet.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def test_the_llm_server_dies_with_a_killed_daemon(tmp_path: Path) -> None:
    port = free_port()
    daemon = subprocess.Popen([sys.executable, "-c", CHILD.format(port=port)],
                              stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    child = 0
    try:
        assert daemon.stdout is not None
        child = int(daemon.stdout.readline())
        assert alive(child) and port_in_use("127.0.0.1", port)
        daemon.kill()  # kill -9: no clean-up code of the daemon runs
        daemon.wait(10)
        deadline = time.monotonic() + 20
        while (alive(child) or port_in_use("127.0.0.1", port)) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child), "the llama.cpp child outlived the daemon"
        assert not port_in_use("127.0.0.1", port), "the port is still taken"
    finally:
        daemon.kill()
        if child and alive(child):
            os.kill(child, signal.SIGKILL)

