"""A bounded fuzz of the API: seeded random bodies, types, sizes, image bombs, query strings,
headers and WebSocket garbage. Every answer must be a 4xx/2xx with a JSON ``detail`` for
errors (never a 500), and the daemon must keep answering afterwards."""

from __future__ import annotations

import base64
import json
import random
import struct
import zlib
from typing import Any

import aiohttp
import pytest

from tests.conftest import MakeAPI
from tests.test_security import png_header

ROUNDS = 1500  # ~30 s here


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**63, -(2**70), 10**400])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e-320, float("inf"), float("nan")])
    if kind == 4:
        return "".join(chr(rng.randrange(1, 0x2FFFF)) for _ in range(rng.randrange(0, 40)))
    if kind == 5:
        return rng.choice(["", " ", "What is this?", "x" * 5000, "\u0000", "data:,"])
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if kind == 7:
        return {rng.choice(["text", "image", "speak", "stream", "play", "prompt",
                            "session_id", "z"]): random_value(rng, depth + 1)
                for _ in range(rng.randrange(0, 4))}
    return random_image(rng)


def random_image(rng: random.Random) -> str:
    choice = rng.randrange(5)
    if choice == 0:
        raw = rng.randbytes(rng.randrange(0, 2000))
    elif choice == 1:
        raw = png_header(rng.choice([1, 100, 20000, 65535, 2**31 - 1]),
                         rng.choice([1, 100, 20000, 65535, 2**31 - 1]))
    elif choice == 2:
        raw = png_header(64, 64)[:rng.randrange(8, 60)]  # cut inside the header
    elif choice == 3:  # a GIF header claiming 65535 x 65535
        raw = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00" * 7 + b";"
    else:
        raw = b"\x89PNG\r\n\x1a\n" + zlib.compress(rng.randbytes(100))
    text = base64.b64encode(raw).decode()
    return rng.choice([text, "data:image/png;base64," + text, text[:-3], text + "!"])


def random_body(rng: random.Random) -> tuple[bytes, str]:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 300)), "application/json"
    if kind == 1:
        depth = rng.choice([10, 1000, 50_000])
        return (b'{"text":' * depth) + b"1" + (b"}" * depth), "application/json"
    if kind == 2:
        return json.dumps(random_value(rng)).encode(), rng.choice(
            ["application/json", "text/plain", "application/x-www-form-urlencoded"])
    if kind == 3:  # invalid UTF-8 inside a string
        return b'{"text": "caf\xe9 \xff"}', "application/json"
    body = {"text": random_value(rng) if rng.random() < 0.7 else "Hi.",
            "image": random_value(rng) if rng.random() < 0.5 else random_image(rng)}
    if rng.random() < 0.5:
        body[rng.choice(["speak", "stream", "play", "session_id", "prompt"])] = \
            random_value(rng)
    return json.dumps(body, allow_nan=True).encode(), "application/json"


ROUTES = [("POST", "/api/v1/ask"), ("POST", "/api/v1/process-frame"),
          ("POST", "/api/v1/speak"), ("GET", "/api/v1/history"), ("GET", "/api/v1/status"),
          ("GET", "/api/v1/frame"), ("PUT", "/api/v1/ask"), ("GET", "/api/v1/nope"),
          ("DELETE", "/api/v1/status")]
QUERIES = ["", "?limit=1e25", "?limit=-5", "?limit=99999999999999999999", "?limit=%00",
           "?session_id=" + "x" * 3000, "?limit=3&session_id=nope", "?token=abc"]


@pytest.mark.timeout(600)
async def test_fuzzed_requests_never_break_the_api(make_api: MakeAPI,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    api = await make_api(llm={"max_tokens": 2}, max_body_mb=1.0, max_image_mb=0.5,
                         max_image_pixels=4_000_000, max_speak_chars=200,
                         request_timeout_s=5.0)
    rng = random.Random(20261201)
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession() as session:
        for _ in range(ROUNDS):
            method, path = rng.choice(ROUTES)
            query = rng.choice(QUERIES) if method == "GET" else ""
            data, content_type = random_body(rng) if method != "GET" else (b"", "")
            headers = {"Content-Type": content_type} if content_type else {}
            if rng.random() < 0.1:
                headers["Accept"] = "text/event-stream"
            async with session.request(method, api.url + path + query, data=data,
                                       headers=headers) as resp:
                raw = await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                assert resp.status < 500 or resp.status == 503, (path, data[:200], raw[:300])
                if resp.status >= 400:
                    assert json.loads(raw)["detail"], raw
        # WebSocket garbage: the server closes or ignores it, and goes on.
        for _ in range(10):
            ws = await session.ws_connect(api.url + "/ws/stream")
            if rng.random() < 0.5:
                await ws.send_bytes(rng.randbytes(rng.randrange(1, 5000)))
            else:
                await ws.send_str("".join(chr(rng.randrange(32, 0xD7FF)) for _ in range(99)))
            await ws.receive(timeout=10)
            await ws.close()
        async with session.get(api.url + "/api/v1/status") as resp:
            assert resp.status == 200 and (await resp.json())["state"] == "idle"
        async with session.post(api.url + "/api/v1/ask", json={"text": "Hello?"}) as resp:
            assert resp.status == 200
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert statuses.get(400, 0) > ROUNDS // 4, statuses  # the fuzz reached the checks
