"""Every backend of the source documents against a local server that speaks its protocol as
the seed describes it, including its error cases."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from heisenberg.core.bus import EventBus
from heisenberg.core.config import Config, LLMConfig, StatesConfig
from heisenberg.core.errors import (
    ConfigError,
    LLMIncompleteError,
    LLMLoadingError,
    LLMProtocolError,
    LLMServerError,
    TurnTimeoutError,
)
from heisenberg.llm.backend import LLMBackend
from heisenberg.llm.backends import backend_url, create_backend, probe_health
from heisenberg.llm.prompts import PromptBuilder
from heisenberg.orchestrator.assistant import Assistant

JPEG = b"\xff\xd8\xff\xe0fake-jpeg-bytes\xff\xd9"
B64 = base64.b64encode(JPEG).decode()
PROMPT = PromptBuilder("openai", system_prompt="Be brief.").build("What is in this image?")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def backend(kind: str, routes: dict[tuple[str, str], Handler], llava_path: str = "/",
                  **cfg: Any) -> AsyncIterator[LLMBackend]:
    app = web.Application()
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    if kind == "llava":  # seed 000: one full URL, LLAVA_SERVER_URL
        cfg = {"llava_url": base + llava_path, **cfg}
    config = LLMConfig(backend=kind, url="" if kind == "llava" else base, retry_backoff_s=0.01,
                       max_retries=2, **cfg)
    llm = create_backend(config, backend_url(config))
    try:
        yield llm
    finally:
        await llm.close()
        await server.close()


# ------------------------------------------------------------------ openai (seed 003)

def openai_handler(seen: list[dict[str, Any]]) -> Handler:
    async def chat(request: web.Request) -> web.StreamResponse:
        seen.append({"auth": request.headers.get("Authorization"), **await request.json()})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in ("A ", "cat."):
            chunk = {"choices": [{"delta": {"content": piece}, "finish_reason": None}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        return resp

    return chat


async def test_openai_streams_with_image_model_and_key() -> None:
    seen: list[dict[str, Any]] = []

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "llava", "architecture": {
            "input_modalities": ["text", "image"]}}]})

    routes = {("POST", "/v1/chat/completions"): openai_handler(seen),
              ("GET", "/v1/models"): models}
    async with backend("openai", routes, model="llava", api_key="sk-local") as llm:
        assert (await llm.complete(PROMPT, JPEG)).text == "A cat."
    [body] = seen
    assert body["auth"] == "Bearer sk-local" and body["model"] == "llava"
    assert body["stream"] is True
    content = body["messages"][-1]["content"]
    assert content[0] == {"type": "image_url",
                          "image_url": {"url": f"data:image/jpeg;base64,{B64}"}}
    assert content[1] == {"type": "text", "text": "What is in this image?"}


async def test_openai_text_only_model_gets_no_image() -> None:
    seen: list[dict[str, Any]] = []

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "m", "architecture": {
            "input_modalities": ["text"]}}]})

    routes = {("POST", "/v1/chat/completions"): openai_handler(seen),
              ("GET", "/v1/models"): models}
    async with backend("openai", routes) as llm:
        await llm.complete(PROMPT, JPEG)
        assert llm.vision is False
    assert isinstance(seen[0]["messages"][-1]["content"], str)


async def test_openai_url_with_v1_suffix_and_http_error() -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "model 'x' not found"}}, status=404)

    routes = {("POST", "/v1/chat/completions"): refuse}
    async with backend("openai", routes) as llm:
        llm.base_url += "/v1"
        with pytest.raises(LLMServerError, match="model 'x' not found"):
            await llm.complete(PROMPT)


# ------------------------------------------------------------------ llava (seed 000)

async def test_llava_sends_prompt_image_and_token() -> None:
    seen: list[dict[str, Any]] = []

    async def vision(request: web.Request) -> web.Response:
        seen.append({"auth": request.headers.get("Authorization"), **await request.json()})
        return web.json_response({"text": "Une scène calme."})

    async with backend("llava", {("POST", "/v1/vision"): vision}, llava_path="/v1/vision",
                       llava_token="token-test") as llm:
        result = await llm.complete(PROMPT, JPEG)
    assert result.text == "Une scène calme."
    [body] = seen
    assert body["auth"] == "Bearer token-test"
    assert body["image"] == B64 and body["prompt"].endswith("User: What is in this image?"
                                                            "\n\nAssistant:")


@pytest.mark.parametrize("answer", [{"answer": "no text field"}, {"text": 42}, "not json"])
async def test_llava_without_valid_text_is_a_clear_error(answer: Any) -> None:
    async def vision(request: web.Request) -> web.Response:
        if isinstance(answer, str):
            return web.Response(text=answer)
        return web.json_response(answer)

    async with backend("llava", {("POST", "/"): vision}) as llm:
        with pytest.raises(LLMProtocolError, match="text|malformed JSON"):
            await llm.complete(PROMPT, JPEG)


async def test_llava_prompt_can_be_the_question_alone() -> None:
    seen: list[str] = []

    async def vision(request: web.Request) -> web.Response:
        seen.append((await request.json())["prompt"])
        return web.json_response({"text": "ok"})

    async with backend("llava", {("POST", "/"): vision}, llava_prompt="question") as llm:
        await llm.complete(PROMPT, JPEG)
    assert seen == ["What is in this image?"]


def test_llava_needs_a_url() -> None:
    with pytest.raises(ConfigError, match="LLAVA_SERVER_URL"):
        backend_url(LLMConfig(backend="llava"))
    assert backend_url(LLMConfig(backend="llava", llava_url="http://127.0.0.1:8081/v1/vision")
                       ) == "http://127.0.0.1:8081/v1/vision"
    with pytest.raises(ConfigError, match="llm.url must be set"):
        backend_url(LLMConfig(backend="ollama"))


# ------------------------------------------------------------------ vlm-server (seed 002)

async def test_vlm_server_generate_with_image() -> None:
    seen: list[dict[str, Any]] = []

    async def generate(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"response": "A cat on a sofa.", "processing_time": 2.34,
                                  "usage": {"input_tokens": 125, "output_tokens": 89,
                                            "total_tokens": 214}})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "model_loaded": True, "device": "cuda"})

    routes = {("POST", "/api/v1/generate"): generate, ("GET", "/health"): health}
    async with backend("vlm-server", routes, max_tokens=256, temperature=0.5) as llm:
        result = await llm.complete(PROMPT, JPEG)
    assert result.text == "A cat on a sofa."
    assert (result.prompt_tokens, result.completion_tokens) == (125, 89)
    assert result.timings["processing_time_s"] == 2.34
    [body] = seen
    assert body["max_new_tokens"] == 256 and body["temperature"] == 0.5 and "top_p" in body
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][-1]["content"] == [
        {"type": "image", "image": f"data:image/jpeg;base64,{B64}"},
        {"type": "text", "text": "What is in this image?"}]


@pytest.mark.parametrize(("status", "detail", "error"), [
    (400, "Invalid image input", LLMServerError),
    (500, "CUDA out of memory", LLMServerError),
    (503, "Model not loaded", LLMLoadingError),
])
async def test_vlm_server_errors(status: int, detail: str, error: type[Exception]) -> None:
    async def generate(request: web.Request) -> web.Response:
        return web.json_response({"detail": detail}, status=status)

    async with backend("vlm-server", {("POST", "/api/v1/generate"): generate}) as llm:
        with pytest.raises(error, match=detail):
            await llm.complete(PROMPT)


async def test_vlm_server_that_is_still_loading_is_not_reported_loaded() -> None:
    """Seed 002: /health answers 200 with "model_loaded": false while the model loads."""
    loaded = False

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "model_loaded": loaded})

    async with backend("vlm-server", {("GET", "/health"): health}) as llm:
        health_now = await probe_health("vlm-server", llm.base_url)
        assert health_now.reachable and not health_now.model_loaded
        assert "not loaded" in health_now.detail
        loaded = True
        assert (await probe_health("vlm-server", llm.base_url)).model_loaded


# ------------------------------------------------------------------ ollama (seed 003)

def ollama_chat(lines: list[dict[str, Any]], seen: list[dict[str, Any]]) -> Handler:
    async def chat(request: web.Request) -> web.StreamResponse:
        seen.append(await request.json())
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        for line in lines:
            await resp.write((json.dumps(line) + "\n").encode())
        return resp

    return chat


async def test_ollama_streams_ndjson_with_images() -> None:
    seen: list[dict[str, Any]] = []
    lines = [{"message": {"role": "assistant", "content": "A "}, "done": False},
             {"message": {"role": "assistant", "content": "dog."}, "done": False},
             {"message": {"role": "assistant", "content": ""}, "done": True,
              "done_reason": "stop", "prompt_eval_count": 30, "eval_count": 2}]

    async def show(request: web.Request) -> web.Response:
        return web.json_response({"capabilities": ["completion", "vision"]})

    routes = {("POST", "/api/chat"): ollama_chat(lines, seen), ("POST", "/api/show"): show}
    async with backend("ollama", routes, model="llava:7b") as llm:
        result = await llm.complete(PROMPT, JPEG)
    assert result.text == "A dog." and (result.prompt_tokens, result.completion_tokens) == (30, 2)
    [body] = seen
    assert body["model"] == "llava:7b" and body["stream"] is True
    assert body["messages"][-1] == {"role": "user", "content": "What is in this image?",
                                    "images": [B64]}
    assert body["options"]["num_predict"] == llm.config.max_tokens


@pytest.mark.parametrize(("lines", "error", "words"), [
    ([{"message": {"content": "A"}, "done": False}], LLMIncompleteError, "without"),
    ([{"message": {"content": "A"}, "done": False}, {"error": "model crashed"}],
     LLMServerError, "model crashed"),
])
async def test_ollama_broken_streams(lines: list[dict[str, Any]], error: type[Exception],
                                     words: str) -> None:
    async with backend("ollama", {("POST", "/api/chat"): ollama_chat(lines, [])}) as llm:
        with pytest.raises(error, match=words):
            await llm.complete(PROMPT)


async def test_ollama_model_not_found() -> None:
    async def chat(request: web.Request) -> web.Response:
        return web.json_response({"error": "model \"nope\" not found, try pulling it first"},
                                 status=404)

    async with backend("ollama", {("POST", "/api/chat"): chat}, model="nope") as llm:
        with pytest.raises(LLMServerError, match="not found, try pulling"):
            await llm.complete(PROMPT)


async def test_ollama_without_vision_capability_gets_text_only() -> None:
    seen: list[dict[str, Any]] = []
    lines = [{"message": {"content": "Hi."}, "done": True}]

    async def show(request: web.Request) -> web.Response:
        return web.json_response({"capabilities": ["completion"]})

    routes = {("POST", "/api/chat"): ollama_chat(lines, seen), ("POST", "/api/show"): show}
    async with backend("ollama", routes, model="gemma3:270m") as llm:
        await llm.complete(PROMPT, JPEG)
    assert "images" not in seen[0]["messages"][-1]


async def test_a_slow_non_streaming_server_is_waited_for_up_to_the_turn_limit() -> None:
    """Seed 000 warns of CPU servers that take a minute: no stall timeout cuts them; the one
    limit is states.thinking_timeout_s, and its message names it."""
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.5)
        return web.json_response({"response": "A cat.", "usage": {}})

    async with backend("vlm-server", {("POST", "/api/v1/generate"): slow},
                       stall_timeout_s=0.5) as llm:
        result = await llm.complete(PROMPT)  # 1.5 s > llm.stall_timeout_s
        assert result.text == "A cat."
        states = StatesConfig(thinking_timeout_s=1.0)
        assistant = Assistant(Config(llm=llm.config, states=states), EventBus(), llm)
        outcome = await assistant.ask("What is this?")
        assert outcome.error is not None and outcome.error.code == "turn_timeout"
        assert "states.thinking_timeout_s" in outcome.error.message
        with pytest.raises(TurnTimeoutError, match="states.thinking_timeout_s"):
            await assistant.describe("What is this?", JPEG)


async def test_ask_while_the_vlm_model_is_not_loaded_is_503(make_api: Any) -> None:
    """Seed 002: the VLM server's /health says "model_loaded": false; docs/API.md: 503."""
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "loading", "model_loaded": False})

    async def generate(request: web.Request) -> web.Response:
        raise AssertionError("no question may reach a server whose model is not loaded")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/api/v1/generate", generate)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        api = await make_api(url=str(server.make_url("")).rstrip("/"),
                             llm={"backend": "vlm-server"})
        async with aiohttp.ClientSession() as session:
            async with session.post(api.url + "/api/v1/ask", json={"text": "Hi"}) as resp:
                body = await resp.json()
            assert resp.status == 503 and "not loaded" in body["detail"]
            async with session.get(api.url + "/api/v1/health") as resp:
                health_body = await resp.json()
            assert resp.status == 503 and health_body["llm"]["model_loaded"] is False
    finally:
        await server.close()
