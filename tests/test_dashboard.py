"""The dashboard in a real headless Chromium (Debian ``chromium``), driven over the DevTools
protocol: type a question into the page and watch the streamed answer appear."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest

from tests.conftest import MakeAPI, free_port

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


class Page:
    """Just enough of the DevTools protocol: navigate and evaluate JavaScript."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = json.loads((await self.ws.receive()).data)
            if message.get("id") == call_id:
                assert "error" not in message, message
                return dict(message["result"])

    async def js(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[Page]:
    binary = shutil.which("chromium")
    assert binary, "Debian package chromium is missing (.ci/install)"
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary, *CHROMIUM_FLAGS, f"--remote-debugging-port={port}",
        f"--user-data-dir={tmp_path / 'profile'}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as session:
            targets: list[dict[str, Any]] = []
            async with asyncio.timeout(30):
                while not any(t.get("type") == "page" for t in targets):
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                            targets = await resp.json()
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.2)
            page = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Page(ws)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def wait_for(page: Page, expression: str, timeout_s: float) -> Any:
    async with asyncio.timeout(timeout_s):
        while not (value := await page.js(expression)):
            await asyncio.sleep(0.05)
    return value


async def test_dashboard_asks_and_streams_the_answer(make_api: MakeAPI,
                                                     chromium: Page) -> None:
    api = await make_api(token="dash-token", llm={"max_tokens": 40})
    await chromium.send("Page.navigate", url=f"{api.url}/?token=dash-token")
    await wait_for(chromium, "document.getElementById('state').textContent === 'idle'", 20)
    await wait_for(chromium, "document.getElementById('health').textContent.includes('ready')",
                   10)
    await chromium.js("""
        document.getElementById('question').value = 'What is the capital of France?';
        document.getElementById('ask').requestSubmit(); true""")
    lengths: list[int] = []
    async with asyncio.timeout(60):
        while True:
            state = await chromium.js("""({n: document.getElementById('answer').textContent.length,
                done: document.getElementById('answer').dataset.done})""")
            lengths.append(state["n"])
            if state["done"] == "1":
                break
            await asyncio.sleep(0.02)
    answer = await chromium.js("document.getElementById('answer').textContent")
    assert answer.strip()
    # Streamed: the page showed part of the answer before all of it.
    assert any(0 < n < len(answer) for n in lengths), lengths
    assert await chromium.js("document.getElementById('transcript').textContent") == (
        "What is the capital of France?")
    assert await chromium.js("document.getElementById('error').textContent") == ""
    # The same answer is in the history, and the turn's latencies are in the table.
    async with aiohttp.ClientSession() as session, session.get(
            api.url + "/api/v1/history", headers={"Authorization": "Bearer dash-token"}) as resp:
        history = await resp.json()
    assert history["turns"][-1]["assistant"] == answer
    await wait_for(chromium, "document.getElementById('turns').children.length === 1", 10)
    row = await chromium.js("document.getElementById('turns').children[0].innerText")
    assert "What is the capital of France?" in row

    # A question with an image (here from another API client): the page shows that frame.
    assert await chromium.js("document.getElementById('frame').style.display") != "block"
    image = np.zeros((120, 200, 3), np.uint8)
    image[:, 100:] = (0, 0, 255)
    ok, png = cv2.imencode(".png", image)
    assert ok
    async with aiohttp.ClientSession() as session, session.post(
            api.url + "/api/v1/ask", headers={"Authorization": "Bearer dash-token"},
            json={"text": "What do you see?",
                  "image": base64.b64encode(png.tobytes()).decode()}) as resp:
        assert resp.status == 200
    shown = await wait_for(chromium, """(() => { const img = document.getElementById('frame');
        return img.style.display === 'block' && img.complete && img.naturalWidth
            ? [img.naturalWidth, img.naturalHeight] : null; })()""", 10)
    assert shown == [200, 120]
    assert await chromium.js("document.getElementById('transcript').textContent") == (
        "What do you see?")
