"""The dashboard in a real headless Chromium (Debian ``chromium``), driven over the DevTools
protocol: type a question into the page and watch the streamed answer appear."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import cv2
import numpy as np

from tests.conftest import MakeAPI, Page


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
    assert history["turns"][-1]["assistant"] == answer.strip()
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


async def test_the_dashboard_says_which_device_is_missing(make_api: MakeAPI,
                                                          chromium: Page) -> None:
    api = await make_api()
    api.devices = lambda: {"microphone": "mic:default: error: microphone (default) "
                                         "unavailable: Error querying device -1",
                           "speaker": "speaker:default: ok",
                           "camera": "missing: no webcam (/dev/video0 does not exist)"}
    await chromium.send("Page.navigate", url=api.url + "/")
    shown = await wait_for(chromium, "document.getElementById('devices').textContent", 20)
    assert "microphone (default) unavailable" in shown and "no webcam" in shown
    assert "speaker" not in shown  # only what does not work


async def test_the_api_page_is_interactive_and_served_from_the_package(
        make_api: MakeAPI, chromium: Page) -> None:
    """Seed 001's /docs (Swagger UI), with nothing fetched from outside the machine."""
    api = await make_api(token="docs-token")
    async with aiohttp.ClientSession() as session:
        async with session.get(api.url + "/docs") as resp:
            page = await resp.text()
        assert resp.status == 200 and "http" not in page  # every asset is the daemon's own
        async with session.get(api.url + "/docs/swagger-ui-bundle.js") as resp:
            assert resp.status == 200 and len(await resp.read()) > 100_000
        async with session.get(api.url + "/docs/..%2Fconfig.toml",
                               headers={"Authorization": "Bearer docs-token"}) as resp:
            assert resp.status == 404  # only Swagger UI's own files, by name
    await chromium.send("Page.navigate", url=f"{api.url}/docs?token=docs-token")
    paths = await wait_for(chromium, """(() => {
        const p = [...document.querySelectorAll('.opblock-summary-path')]
            .map((e) => e.textContent.trim());
        return p.length ? p : null; })()""", 30)
    assert "/api/v1/ask" in paths and "/api/v1/process-frame" in paths


async def test_the_dashboard_lists_counts_down_and_cancels_timers(make_api: MakeAPI,
                                                                  chromium: Page) -> None:
    api = await make_api()
    await chromium.send("Page.navigate", url=f"{api.url}/")
    await wait_for(chromium, "document.getElementById('state').textContent === 'idle'", 20)
    assert await chromium.js("document.getElementById('timers').children.length") == 0
    # Set by another client (the voice, the API): the page hears of it on the WebSocket.
    pasta = api.assistant.timers.add(125.0, "pasta")
    api.assistant.timers.add(1.0)
    rows = "document.getElementById('timers').innerText"
    await wait_for(chromium, f"{rows}.includes('pasta') && {rows}.includes('ringing')", 10)
    shown = await chromium.js(rows)
    assert "2:0" in shown, shown  # 2:05, 2:04...: counted down on the page
    ringing = await chromium.js(
        "document.querySelector('#timers tr.ringing button').textContent")
    assert ringing == "stop"
    await chromium.js("document.querySelector('#timers tr.ringing button').click(); true")
    await wait_for(chromium, "document.getElementById('timers').children.length === 1", 10)
    assert [t.timer_id for t in api.assistant.timers.all()] == [pasta.timer_id]
