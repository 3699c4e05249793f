"""The API is the user's, not every web page's: Origin and Host checks, content types, tokens,
bounded inputs, slow clients. Probed like an attacker would: raw HTTP with forged headers, and
a real headless Chromium page on another origin."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from heisenberg.api.server import API
from heisenberg.core.config import parse_config
from heisenberg.core.errors import ConfigError
from tests.conftest import MakeAPI, Page, free_port

EVIL = "http://evil.example"


async def request(api: API, method: str, path: str, *, headers: dict[str, str] | None = None,
                  **kwargs: Any) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as session, session.request(
            method, api.url + path, headers=headers or {}, **kwargs) as resp:
        raw = await resp.read()
        body = json.loads(raw) if resp.content_type == "application/json" else raw
        return resp.status, body, resp.headers


async def turns(api: API) -> list[dict[str, Any]]:
    status, body, _ = await request(api, "GET", "/api/v1/history")
    assert status == 200, body
    return list(body["turns"])


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels: its header and a little data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + \
        chunk(b"IEND", b"")


ENDPOINTS = [("POST", "/api/v1/ask"), ("POST", "/api/v1/process-frame"),
             ("POST", "/api/v1/speak"), ("GET", "/api/v1/history"),
             ("DELETE", "/api/v1/history"), ("GET", "/api/v1/status"),
             ("GET", "/api/v1/frame"), ("GET", "/metrics"), ("GET", "/api/v1/openapi.json"),
             ("GET", "/api/v1/timers"), ("POST", "/api/v1/timers"),
             ("DELETE", "/api/v1/timers/abc"),
             ("OPTIONS", "/api/v1/ask")]


async def test_foreign_origins_are_refused_on_every_endpoint(
        make_api: MakeAPI, caplog: pytest.LogCaptureFixture) -> None:
    api = await make_api()
    for method, path in ENDPOINTS:
        status, body, headers = await request(
            api, method, path, headers={"Origin": EVIL, "Content-Type": "text/plain"},
            data=b'{"text": "planted", "speak": true}')
        assert status == 403, (method, path, status, body)
        assert "api.cors_origins" in body["detail"]
        assert "Access-Control-Allow-Origin" not in headers
    # The WebSocket handshake too (a page's WebSocket always names its origin).
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(api.url + "/ws/stream", headers={"Origin": EVIL})
    assert refused.value.status == 403
    # Loads that carry no Origin but say where they come from (an <img>, a <script>).
    status, _, _ = await request(api, "GET", "/api/v1/frame",
                                 headers={"Sec-Fetch-Site": "cross-site",
                                          "Sec-Fetch-Mode": "no-cors"})
    assert status == 403
    # A link from another site to the dashboard still opens it.
    status, _, _ = await request(api, "GET", "/", headers={"Sec-Fetch-Site": "cross-site",
                                                            "Sec-Fetch-Mode": "navigate"})
    assert status == 200
    assert await turns(api) == []
    # Logged once, not once per request: a page can send thousands.
    said = [r for r in caplog.records if EVIL in r.getMessage() and r.levelname == "WARNING"]
    assert len(said) == 1, [r.getMessage() for r in said]


async def test_same_origin_listed_origins_and_plain_clients_are_served(
        make_api: MakeAPI) -> None:
    listed = "http://localhost:3000"
    api = await make_api(cors_origins=[listed])
    own = api.url  # the dashboard's own origin
    for origin in (own, listed, None):
        headers = {"Origin": origin} if origin else {}
        status, body, got = await request(api, "POST", "/api/v1/ask", headers=headers,
                                          json={"text": "Say hello."})
        assert status == 200, (origin, body)
        assert got.get("Access-Control-Allow-Origin") == (listed if origin == listed else None)
    status, _, got = await request(api, "OPTIONS", "/api/v1/ask", headers={
        "Origin": listed, "Access-Control-Request-Method": "POST"})
    assert status == 204 and got["Access-Control-Allow-Origin"] == listed
    assert [t["user"] for t in await turns(api)] == ["Say hello."] * 3


async def test_bodies_only_as_json(make_api: MakeAPI) -> None:
    api = await make_api()
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x"):
        status, body, _ = await request(api, "POST", "/api/v1/ask",
                                        headers={"Content-Type": content_type},
                                        data=b'{"text": "planted"}')
        assert status == 415 and "application/json" in body["detail"], body
    assert await turns(api) == []


async def test_dns_rebinding_host_names_are_refused(make_api: MakeAPI) -> None:
    api = await make_api(allowed_hosts=["desk.lan"])
    port = api.url.rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
        status, body, _ = await request(api, "GET", "/api/v1/history", headers={"Host": host})
        assert status == 421 and "api.allowed_hosts" in body["detail"], (host, body)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"desk.lan:{port}",
                 "LOCALHOST"):
        status, body, _ = await request(api, "GET", "/api/v1/history", headers={"Host": host})
        assert status == 200, (host, body)


async def test_token_only_as_bearer_and_on_the_websocket_in_the_query(
        make_api: MakeAPI) -> None:
    api = await make_api(token="s3cret")
    for headers, path in (({}, "/api/v1/history"),
                          ({"Authorization": "s3cret"}, "/api/v1/history"),
                          ({"Authorization": "Basic s3cret"}, "/api/v1/history"),
                          ({}, "/api/v1/history?token=s3cret"),
                          ({"Authorization": "Bearer wrong"}, "/api/v1/status")):
        status, body, got = await request(api, "GET", path, headers=headers)
        assert status == 401, (headers, path, body)
        assert got["WWW-Authenticate"] == 'Bearer realm="heisenberg"'
    for scheme in ("Bearer", "bearer"):
        status, _, _ = await request(api, "GET", "/api/v1/history",
                                     headers={"Authorization": f"{scheme} s3cret"})
        assert status == 200
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(api.url + "/ws/stream?token=s3cret")
        await ws.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(api.url + "/ws/stream")
        assert refused.value.status == 401


async def test_image_bombs_are_refused_from_the_header(make_api: MakeAPI) -> None:
    api = await make_api(max_image_pixels=1_000_000)
    for width, height in ((20000, 20000), (33000, 33000), (1001, 1000)):
        image = base64.b64encode(png_header(width, height)).decode()
        for path in ("/api/v1/ask", "/api/v1/process-frame"):
            status, body, _ = await request(api, "POST", path,
                                            json={"text": "What is this?", "image": image})
            assert status == 400, (width, path, body)
            assert f"{width}x{height}" in body["detail"] or \
                f"({width * height} pixels)" in body["detail"], body
            assert "api.max_image_pixels" in body["detail"]
    # Within the limit, a header with broken data is refused as undecodable, not a 500.
    image = base64.b64encode(png_header(640, 480)).decode()
    status, body, _ = await request(api, "POST", "/api/v1/ask",
                                    json={"text": "What is this?", "image": image})
    assert status == 400 and "could not be decoded" in body["detail"], body
    assert await turns(api) == []


@pytest.mark.parametrize(("path", "kwargs", "words"), [
    ("/api/v1/ask", {"data": b"[" * 100_000 + b"]" * 100_000}, "nested too deeply"),
    ("/api/v1/ask", {"json": {"text": "hi", "speak": "yes"}}, "'speak' must be true or false"),
    ("/api/v1/ask", {"json": {"text": "hi", "stream": 1}}, "'stream' must be true or false"),
    ("/api/v1/ask", {"json": {"text": "hi", "session_id": "x" * 201}}, "'session_id'"),
    ("/api/v1/speak", {"json": {"text": "hi", "play": "no"}}, "'play' must be true or false"),
    ("/api/v1/speak", {"json": {"text": "word " * 500}}, "api.max_speak_chars"),
    ("/api/v1/process-frame", {"json": {"image": 5}}, "data URI"),
])
async def test_malformed_input_is_a_4xx_naming_the_problem(
        make_api: MakeAPI, path: str, kwargs: dict[str, Any], words: str) -> None:
    api = await make_api(max_speak_chars=1000)
    headers = {"Content-Type": "application/json"} if "data" in kwargs else {}
    status, body, _ = await request(api, "POST", path, headers=headers, **kwargs)
    assert status == 400 and words in body["detail"], body


async def test_history_limit_is_bounded(make_api: MakeAPI) -> None:
    api = await make_api()
    for limit in ("1e25", "10000000000000000000000000000", "-1", "abc"):
        status, body, _ = await request(api, "GET", f"/api/v1/history?limit={limit}")
        assert status == 400 and "'limit'" in body["detail"], (limit, body)


async def test_speak_counts_in_the_queue(make_api: MakeAPI) -> None:
    api = await make_api(max_queue=1)
    long_text = "This sentence is spoken to keep the speech engine busy for a while. " * 12
    first = asyncio.create_task(request(api, "POST", "/api/v1/speak",
                                        json={"text": long_text}))
    async with asyncio.timeout(30):
        while api._pending == 0:
            await asyncio.sleep(0.005)
    for path, body in (("/api/v1/speak", {"text": "Hello."}),
                       ("/api/v1/ask", {"text": "Hello?"})):
        status, answer, _ = await request(api, "POST", path, json=body)
        assert status == 429 and "api.max_queue" in answer["detail"], answer
    status, wav, _ = await first
    assert status == 200 and wav[:4] == b"RIFF"


async def test_slow_clients_are_cut_off(make_api: MakeAPI) -> None:
    api = await make_api(request_timeout_s=1.0)
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    # A body announced and never sent: 408 once the timeout has passed.
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /api/v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"te")
    await writer.drain()
    async with asyncio.timeout(20):
        head = await reader.readline()
    assert b" 408 " in head, head
    writer.close()
    # Headers that never end: the connection is closed.
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    await writer.drain()
    async with asyncio.timeout(20):
        assert await reader.read() == b""
    writer.close()


def test_a_network_api_without_a_token_is_refused() -> None:
    for host in ("0.0.0.0", "", "192.168.1.20", "::"):
        with pytest.raises(ConfigError, match=r"api.host.*api.token.*allow_open"):
            parse_config({"api": {"enabled": True, "host": host}})
    for api in ({"host": "0.0.0.0", "token": "t"}, {"host": "0.0.0.0", "allow_open": True},
                {"host": "::1"}, {"host": "localhost"}, {"host": "0.0.0.0", "enabled": False}):
        parse_config({"api": {"enabled": True, **api}})


async def test_an_open_api_says_so_in_the_log(make_api: MakeAPI,
                                              caplog: pytest.LogCaptureFixture) -> None:
    await make_api(host="0.0.0.0", allow_open=True)
    assert any("reachable from other machines WITHOUT a token" in r.getMessage()
               for r in caplog.records)


# --- a real browser on another origin ------------------------------------------------------

ATTACK_PAGE = """<!doctype html><title>a page the user opened</title>
<iframe name="sink" style="display:none"></iframe>
<form id="form" method="post" enctype="text/plain" target="sink">
  <input name='{"text": "planted by a form", "x": "' value='"}'>
</form>"""


@pytest.fixture
async def attack_site() -> AsyncIterator[str]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=ATTACK_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "localhost", port).start()
    yield f"http://localhost:{port}"
    await runner.cleanup()


async def run_js(page: Page, script: str) -> Any:
    result = await page.send("Runtime.evaluate", expression=script, awaitPromise=True,
                             returnByValue=True)
    return result["result"].get("value")


async def open_page(page: Page, site: str, api: API) -> str:
    """Open the other site's page; returns the API's WebSocket URL."""
    await page.send("Page.navigate", url=site + "/")
    async with asyncio.timeout(20):
        while await run_js(page, "document.readyState") != "complete":
            await asyncio.sleep(0.05)
    return api.url.replace("http://", "ws://") + "/ws/stream"


async def test_a_page_on_another_origin_cannot_use_the_api(
        make_api: MakeAPI, chromium: Page, attack_site: str) -> None:
    api = await make_api()
    ws_url = await open_page(chromium, attack_site, api)
    seen = await run_js(chromium, f"""(async () => {{
        const out = {{}};
        // No preflight needed: text/plain, opaque answer.
        await fetch("{api.url}/api/v1/ask", {{method: "POST", mode: "no-cors",
            headers: {{"Content-Type": "text/plain"}},
            body: JSON.stringify({{text: "planted by fetch", speak: true}})}});
        try {{
            const r = await fetch("{api.url}/api/v1/history");
            out.history = await r.text();
        }} catch (e) {{ out.history = "blocked"; }}
        out.ws = await new Promise(resolve => {{
            const ws = new WebSocket("{ws_url}");
            ws.onopen = () => resolve("open");
            ws.onerror = () => resolve("refused");
        }});
        const form = document.getElementById("form");
        form.action = "{api.url}/api/v1/ask";
        form.submit();
        await new Promise(r => setTimeout(r, 1500));
        return out;
    }})()""")
    assert seen == {"history": "blocked", "ws": "refused"}, seen
    assert await turns(api) == []


async def test_a_listed_origin_can_use_the_api_from_chromium(
        make_api: MakeAPI, chromium: Page, attack_site: str) -> None:
    """The same page, once the user lists its origin: proves the refusals above are the
    checks at work and not a page that could not have reached the API anyway."""
    api = await make_api(cors_origins=[attack_site])
    ws_url = await open_page(chromium, attack_site, api)
    seen = await run_js(chromium, f"""(async () => {{
        const r = await fetch("{api.url}/api/v1/ask", {{method: "POST",
            headers: {{"Content-Type": "application/json"}},
            body: JSON.stringify({{text: "Say hello."}})}});
        const ws = await new Promise(resolve => {{
            const ws = new WebSocket("{ws_url}");
            ws.onopen = () => {{ ws.close(); resolve("open"); }};
            ws.onerror = () => resolve("refused");
        }});
        return {{status: r.status, ws: ws}};
    }})()""")
    assert seen == {"status": 200, "ws": "open"}, seen
    assert [t["user"] for t in await turns(api)] == ["Say hello."]
