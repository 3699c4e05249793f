"""The OpenAPI 3.1 description of the API, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

_ERROR = {"description": "error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in codes}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def openapi_document(version: str) -> dict[str, Any]:
    image = {"type": "string", "description": "data URI or plain base64 (JPEG, PNG, WebP...)"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Heisenberg local API", "version": version,
                 "description": "Ask by text (optionally with an image), send frames, speak, "
                                "read history, watch the assistant. See docs/API.md."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["detail"],
                          "properties": {"detail": {"type": "string"}}},
                "Answer": {"type": "object", "properties": {
                    "turn_id": {"type": "string"}, "answer": {"type": "string"},
                    "error": {"type": "string", "nullable": True},
                    "session_id": {"type": "string"}, "spoken": {"type": "boolean"},
                    "speech_error": {"type": "string", "nullable": True},
                    "image_dropped": {"type": "string", "nullable": True},
                    "usage": {"type": "object", "properties": {
                        "prompt_tokens": {"type": "integer"},
                        "completion_tokens": {"type": "integer"}}},
                    "first_token_ms": {"type": "integer", "nullable": True},
                    "total_ms": {"type": "integer", "nullable": True}}},
            }},
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/status": {"get": {
                "summary": "Name, version, state, last turn and recent turns' latencies",
                "responses": {"200": {"description": "status"}, **_errors(401)}}},
            "/api/v1/health": {"get": {
                "summary": "LLM reachable / model loaded, vision, devices, uptime",
                "security": [],
                "responses": {"200": {"description": "healthy"},
                              "503": {"description": "the LLM is not reachable or loading"}}}},
            "/api/v1/ask": {"post": {
                "summary": "Ask a question; the whole answer, or SSE tokens with stream: true "
                           "or Accept: text/event-stream",
                "requestBody": {"required": True, **_json({
                    "type": "object", "required": ["text"], "properties": {
                        "text": {"type": "string"}, "image": image,
                        "speak": {"type": "boolean", "default": False},
                        "stream": {"type": "boolean", "default": False},
                        "session_id": {"type": "string", "description":
                                       "continue this conversation (its own history); "
                                       "absent: the assistant's current one"}}})},
                "responses": {
                    "200": {"description": "the answer (JSON), or an SSE stream of "
                                           "`data: {\"token\"}` then `event: done`",
                            **_json({"$ref": "#/components/schemas/Answer"})},
                    **_errors(400, 401, 403, 408, 409, 413, 415, 421, 429, 503)}}},
            "/api/v1/process-frame": {"post": {
                "summary": "Describe a frame; an unchanged scene (perceptual hash) is answered "
                           "from the cache. The frame and its description go with the "
                           "session's next questions (session.scene_ttl_s)",
                "requestBody": {"required": True, **_json({
                    "type": "object", "required": ["image"],
                    "properties": {"image": image, "prompt": {"type": "string"},
                                   "session_id": {"type": "string", "maxLength": 200}}})},
                "responses": {"200": {"description": "description, cached, hash", **_json({
                    "type": "object", "properties": {
                        "description": {"type": "string"}, "cached": {"type": "boolean"},
                        "hash": {"type": "string"}, "vision": {"type": "boolean"}}})},
                    **_errors(400, 401, 403, 408, 413, 415, 421, 422, 429, 502, 503)}}},
            "/api/v1/speak": {"post": {
                "summary": "Speech for a text (Piper), as WAV; play: true also plays it",
                "requestBody": {"required": True, **_json({
                    "type": "object", "required": ["text"],
                    "properties": {"text": {"type": "string"},
                                   "play": {"type": "boolean", "default": False}}})},
                "responses": {"200": {"description": "audio/wav",
                                      "content": {"audio/wav": {}}},
                              **_errors(400, 401, 403, 408, 413, 415, 421, 429, 503)}}},
            "/api/v1/history": {
                "get": {"summary": "Saved turns, oldest first (?limit=50; ?session_id=X: "
                                   "only that conversation's)",
                        "responses": {"200": {"description": "session_id and turns"},
                                      **_errors(400, 401, 403, 421)}},
                "delete": {"summary": "Delete every saved turn",
                           "responses": {"200": {"description": "deleted count"},
                                         **_errors(401, 403, 421, 503)}}},
            "/api/v1/timers": {
                "get": {"summary": "The timers, the one that rings first first: timer_id, "
                                   "name, duration_s, status (running, paused, ringing), "
                                   "remaining_s, ends_at_s",
                        "responses": {"200": {"description": "timers"},
                                      **_errors(401, 403, 421)}},
                "post": {"summary": "Set a timer: {\"seconds\": 300, \"name\": \"pasta\"} "
                                    "(1 s to 100 h; name optional, at most 60 characters)",
                         "responses": {"201": {"description": "the timer"},
                                       **_errors(400, 401, 403, 421)}}},
            "/api/v1/timers/{timer_id}": {"delete": {
                "summary": "Cancel a timer (a ringing one stops ringing)",
                "responses": {"200": {"description": "the timer as it was"},
                              **_errors(401, 403, 404, 421)}}},
            "/api/v1/frame": {"get": {
                "summary": "The last image that went with a question (JPEG)",
                "responses": {"200": {"description": "image/jpeg"}, **_errors(401, 404)}}},
            "/ws/stream": {"get": {
                "summary": "WebSocket: every bus event as JSON ({type, turn_id, timestamp_ms, "
                           "...}); a client that falls behind api.ws_queue events is closed "
                           "with code 1008",
                "responses": {"101": {"description": "switching protocols"}}}},
            "/metrics": {"get": {
                "summary": "Prometheus text: turns, errors by code, stage latencies, state",
                "responses": {"200": {"description": "text/plain; version=0.0.4"}}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document",
                                             "responses": {"200": {"description": "OpenAPI"}}}},
        },
    }
