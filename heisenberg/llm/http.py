"""HTTP plumbing shared by the LLM backends: retries on 503, error mapping, SSE lines.

aiohttp's ``total`` timeout would count the whole body, so streams use ``total=None`` and
``sock_read``: a long answer is fine, a stall is not.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from heisenberg.core.errors import (
    LLMConnectionError,
    LLMLoadingError,
    LLMProtocolError,
    LLMServerError,
    LLMStallError,
)

log = logging.getLogger(__name__)


def stream_timeout(connect_s: float, stall_s: float | None) -> aiohttp.ClientTimeout:
    """``stall_s``: the longest silence of a stream; None for a server that answers all at
    once (its wait is bounded by the turn's ``states.thinking_timeout_s``)."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect_s, sock_read=stall_s)


def _waited(timeout: aiohttp.ClientTimeout) -> str:
    """Which setting ran out, for the message."""
    if timeout.sock_read is None:
        return f"within {timeout.sock_connect:.0f} s to connect (llm.connect_timeout_s)"
    return (f"within {timeout.sock_read:.0f} s (llm.stall_timeout_s; connecting: "
            f"llm.connect_timeout_s = {timeout.sock_connect:.0f} s)")


def error_message(body: bytes) -> str:
    """The server's own words from an error body: llama.cpp/OpenAI ``{"error": {"message"}}``,
    FastAPI ``{"detail"}``, Ollama ``{"error": "..."}``, or the raw text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error", data.get("detail"))
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        if err is not None:
            return err if isinstance(err, str) else json.dumps(err)
    return text[:500]


async def post(session: aiohttp.ClientSession, url: str, payload: Mapping[str, Any], *,
               headers: Mapping[str, str] | None, client_timeout: aiohttp.ClientTimeout,
               max_retries: int, retry_backoff_s: float) -> aiohttp.ClientResponse:
    """POST and return a 2xx response whose body is still unread.

    503 (llama-server: "Loading model") is retried with exponential backoff; any other HTTP
    error becomes ``LLMServerError`` carrying the server's message.
    """
    attempt = 0
    while True:
        try:
            resp = await session.post(url, json=payload, headers=headers, timeout=client_timeout)
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise LLMStallError(f"LLM server at {url} did not answer "
                                f"{_waited(client_timeout)}") from exc
        except aiohttp.ClientConnectionError as exc:
            raise LLMConnectionError(f"cannot reach the LLM server at {url}: {exc}") from exc
        if resp.status < 300:
            return resp
        try:
            body = await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        finally:
            resp.release()
        message = error_message(body)
        if resp.status == 503:
            if attempt >= max_retries:
                raise LLMLoadingError(
                    f"LLM server at {url} is still not ready after {attempt} retries: {message}")
            delay = retry_backoff_s * (2 ** attempt)
            attempt += 1
            log.info("llm: server busy/loading (%s), retry %d in %.2fs", message, attempt, delay)
            await asyncio.sleep(delay)
            continue
        raise LLMServerError(resp.status, message)


def finish_response(resp: aiohttp.ClientResponse, done: bool) -> None:
    """Release a fully read stream; close one left early (cancel, error) hard, so that the
    server notices the dropped connection and stops generating (llama-server frees the slot)."""
    if done:
        resp.release()
    else:
        resp.close()


async def sse_data(resp: aiohttp.ClientResponse, url: str) -> AsyncIterator[str]:
    """Yield the payload of every ``data:`` line of a server-sent event stream.

    Comments and the ``event``/``id``/``retry`` fields are skipped; llama-server's mid-stream
    ``error:`` line becomes ``LLMServerError``; anything else is a protocol error.
    """
    async for raw in _lines(resp, url):
        line = raw.rstrip("\r\n")
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            yield value
        elif name == "error":
            raise LLMServerError(500, error_message(value.encode()))
        elif name not in ("event", "id", "retry"):
            raise LLMProtocolError(f"malformed SSE line from {url}: {line[:200]!r}")


async def ndjson(resp: aiohttp.ClientResponse, url: str) -> AsyncIterator[dict[str, Any]]:
    """Yield each JSON object of a newline-delimited JSON stream (Ollama)."""
    async for line in _lines(resp, url):
        if line.strip():
            yield parse_json(line, url)


def parse_json(text: str, url: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise LLMProtocolError(f"malformed JSON from {url}: {text[:200]!r}") from exc
    if not isinstance(data, dict):
        raise LLMProtocolError(f"expected a JSON object from {url}, got {text[:200]!r}")
    return data


async def _lines(resp: aiohttp.ClientResponse, url: str) -> AsyncIterator[str]:
    try:
        async for raw in resp.content:
            yield raw.decode("utf-8", "replace")
    except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
        raise LLMStallError(f"LLM stream from {url} stalled: no data within "
                            "llm.stall_timeout_s") from exc
    except aiohttp.ClientPayloadError as exc:
        # What a client sees when the server process dies mid-answer: the chunked body
        # ends without its last chunk (aiohttp's TransferEncodingError).
        raise LLMConnectionError(
            f"the language model server at {url} stopped in the middle of the answer (it "
            "crashed or was stopped; a managed server is restarted)") from exc
    except aiohttp.ClientConnectionError as exc:
        raise LLMConnectionError(f"lost the connection to the language model server at "
                                 f"{url}: {exc}") from exc
