"""What every API request goes through: JSON errors, CORS, the bearer token."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from heisenberg.core.config import APIConfig

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: No token needed: the health check, and the dashboard page and script (they hold no data).
OPEN_PATHS = frozenset({"/api/v1/health", "/", "/dashboard.js"})


def fail(status: int, detail: str) -> web.HTTPException:
    """The exception a handler raises for an error answered as ``{"detail": ...}``."""
    cls: type[web.HTTPException] = {
        400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 404: web.HTTPNotFound,
        409: web.HTTPConflict, 429: web.HTTPTooManyRequests, 502: web.HTTPBadGateway,
        503: web.HTTPServiceUnavailable}[status]
    return cls(text=json.dumps({"detail": detail}), content_type="application/json")


def middlewares(api: APIConfig) -> list[Middleware]:
    """Errors outermost (it also turns the others' refusals into JSON), then CORS, then auth."""
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json":
                raise
            detail = exc.text or exc.reason  # aiohttp's own: 404, 405, 413...
            if exc.status == 413:
                detail = (f"request body too large (limit {api.max_body_mb:g} MB, "
                          "api.max_body_mb)")
            return web.json_response({"detail": detail}, status=exc.status)
        except Exception:
            log.exception("API: unexpected error on %s %s", request.method, request.path)
            return web.json_response({"detail": "internal error (see the daemon log)"},
                                     status=500)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        allowed = origin and (origin in api.cors_origins or "*" in api.cors_origins)
        if request.method == "OPTIONS" and allowed:
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
            response.headers["Vary"] = "Origin"
        return response

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = api.token
        if token and request.path not in OPEN_PATHS and request.method != "OPTIONS":
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            given = given or request.query.get("token", "")  # browsers' WebSocket: no headers
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise fail(401, "missing or wrong bearer token (Authorization: Bearer ...)")
        return await handler(request)

    return [errors, cors, auth]
