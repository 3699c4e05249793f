"""What every API request goes through: JSON errors, the Host and Origin checks, CORS, the
bearer token.

A daemon on loopback is still reachable by every web page the user opens: a page can send
requests to 127.0.0.1 (a form post or a ``text/plain`` fetch needs no CORS preflight), and a
DNS-rebinding page can even read the answers under its own host name. So, before any work:

- the Host header must name this machine (loopback, or ``api.allowed_hosts``): 421 otherwise;
- a request from a browser page of another origin is refused (403) unless that origin is in
  ``api.cors_origins``. Browsers name the page in ``Origin`` (every cross-origin fetch, form
  post and WebSocket) and in ``Sec-Fetch-Site`` (also image and script loads); non-browser
  clients (curl, Python) send neither and are let through;
- a body is only read as JSON when it says it is (``application/json``): 415 otherwise;
- the token is only taken from ``Authorization: Bearer``, and as ``?token=`` on the WebSocket
  alone (a browser cannot give a WebSocket headers).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from heisenberg.core.config import APIConfig, is_loopback

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: No token needed: the health check, the dashboard page and script, the API page and its
#: Swagger UI files (they hold no data).
OPEN_PATHS = frozenset({"/api/v1/health", "/", "/dashboard.js", "/docs", "/docs/docs.js",
                        "/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js",
                        "/docs/favicon-32x32.png"})
#: The one path that may carry its token in the query string.
WEBSOCKET_PATHS = frozenset({"/ws/stream"})
#: Pages a user may open from a link on another site (a top-level navigation, read by no one
#: but the user).
NAVIGABLE_PATHS = frozenset({"/", "/docs"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def fail(status: int, detail: str, **headers: str) -> web.HTTPException:
    """The exception a handler raises for an error answered as ``{"detail": ...}``."""
    cls: type[web.HTTPException] = {
        400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
        404: web.HTTPNotFound, 408: web.HTTPRequestTimeout, 409: web.HTTPConflict,
        415: web.HTTPUnsupportedMediaType, 421: web.HTTPMisdirectedRequest,
        422: web.HTTPUnprocessableEntity,
        429: web.HTTPTooManyRequests, 502: web.HTTPBadGateway,
        503: web.HTTPServiceUnavailable}[status]
    return cls(text=json.dumps({"detail": detail}), content_type="application/json",
               headers=headers or None)


def host_name(host_header: str) -> str:
    """``example.org:8765`` -> ``example.org``; ``[::1]:8765`` -> ``::1``."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def host_allowed(api: APIConfig, host_header: str) -> bool:
    name = host_name(host_header).lower().rstrip(".")
    if is_loopback(name) or name in (h.lower() for h in api.allowed_hosts):
        return True
    # The address the API was told to bind, when it is one (not 0.0.0.0 / ::).
    return bool(name) and name == api.host.lower() and api.host not in ("0.0.0.0", "::")


def origin_allowed(api: APIConfig, request: web.Request) -> bool:
    """No browser page of a foreign origin: the dashboard itself, listed origins, and
    clients that are not browsers."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None:
        if origin in api.cors_origins or "*" in api.cors_origins:
            return True
        host = request.headers.get(hdrs.HOST, "")
        return bool(host) and origin.lower() in (f"http://{host}".lower(),
                                                 f"https://{host}".lower())
    site = request.headers.get("Sec-Fetch-Site", "none")
    if site in ("same-origin", "none"):
        return True
    return (request.method == "GET" and request.path in NAVIGABLE_PATHS
            and request.headers.get("Sec-Fetch-Mode") == "navigate")


def bearer(request: web.Request) -> str:
    scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if request.path in WEBSOCKET_PATHS:
        return request.query.get("token", "")
    return ""


def middlewares(api: APIConfig) -> list[Middleware]:
    """Errors outermost (it also turns the others' refusals into JSON), then the Host and
    Origin checks, CORS, and auth."""
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

    refused: set[str] = set()

    def report(what: str) -> None:
        """Log a refusal once per host or origin: a page can send thousands a second."""
        if what in refused:
            log.debug("API: refused %s again", what)
            return
        if len(refused) < 1000:
            refused.add(what)
        log.warning("API: refused %s (logged once)", what)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get(hdrs.HOST)
        if host is not None and not host_allowed(api, host):
            report(f"requests for host {host[:100]!r} (DNS rebinding?)")
            raise fail(421, f"host {host[:100]!r} is not this daemon's; name it in "
                            "api.allowed_hosts to allow it")
        if not origin_allowed(api, request):
            origin = request.headers.get(hdrs.ORIGIN) or request.headers.get(
                "Sec-Fetch-Site") or ""
            report(f"cross-origin requests from {origin[:100]!r}")
            raise fail(403, f"requests from the web page {origin[:100]!r} are refused; add "
                            "its origin to api.cors_origins to allow it")
        if request.method in BODY_METHODS and request.content_type != "application/json" \
                and (request.can_read_body or request.content_length):
            raise fail(415, f"the body must be JSON sent as 'Content-Type: application/json' "
                            f"(got {request.content_type!r})")
        return await handler(request)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN, "")
        listed = origin and (origin in api.cors_origins or "*" in api.cors_origins)
        if request.method == "OPTIONS" and listed:
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if listed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
            response.headers["Vary"] = "Origin"
        return response

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = api.token
        if token and request.path not in OPEN_PATHS and request.method != "OPTIONS":
            given = bearer(request)
            if not hmac.compare_digest(given.encode(), token.encode()):
                where = "Authorization: Bearer ..." + (
                    " or ?token=" if request.path in WEBSOCKET_PATHS else "")
                raise fail(401, f"missing or wrong bearer token ({where})",
                           **{"WWW-Authenticate": 'Bearer realm="heisenberg"'})
        return await handler(request)

    return [errors, guard, cors, auth]
