"""The aiohttp application behind the fake's REST API: parsing, auth, faults, recording.

Route handlers see an :class:`ApiRequest` (path parameters, JSON or multipart body, audit-log reason)
and return a JSON body (200), ``None`` (204), or an :class:`Answer`; they raise
:class:`~.errors.DiscordError` for Discord's error answers. Everything around them is here, written
once: the bot token check, injected faults, the JSON error shape, rate-limit headers, and recording of
every call (with its violation, if the answer was one).
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from . import errors
from .errors import DiscordError, FormErrors
from .recording import MultipartPart, RecordedCall, Violation, bucket_hash

if TYPE_CHECKING:
    from .server import FakeDiscord

_log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
NOT_A_ROUTE = "<not a route>"
FAKE_FAILURE = -1
"""The error code of an answer the fake gave because it failed itself."""
"""The route recorded for a request that matched no route the fake serves."""


@dataclass
class ApiRequest:
    """A parsed request, as route handlers see it."""

    method: str
    route: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    json: Any
    parts: tuple[MultipartPart, ...]
    reason: str | None

    def snowflake(self, name: str) -> int:
        """A path parameter as an id; Discord answers 400 for one that is not a snowflake."""
        value = self.params[name]
        if not value.isdigit():
            form = FormErrors()
            form.add((name,), "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')
            form.raise_if_any()
        return int(value)

    @property
    def payload(self) -> dict[str, Any]:
        """The JSON payload, from the body or from the multipart ``payload_json`` part."""
        if self.json is not None:
            return self.json
        for part in self.parts:
            if part.name == "payload_json":
                return json.loads(part.data)
        return {}

    @property
    def files(self) -> list[MultipartPart]:
        return [part for part in self.parts if part.filename is not None]


@dataclass
class Answer:
    """A handler's answer when it is not simply 200 with a JSON body."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[ApiRequest], Awaitable[Any]]


@dataclass(frozen=True)
class RouteSpec:
    """One route: discord.py's method and path template, and who may call it."""

    method: str
    template: str
    handler: Handler
    bot_auth: bool = True
    """Bot routes need ``Authorization: Bot <token>``; interaction and webhook routes have a path token."""
    prefix: str = API_PREFIX


def json_response(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    """A JSON answer whose content type is exactly ``application/json``: discord.py parses nothing else."""
    if body is None:
        return web.Response(status=status if status != 200 else 204, headers=headers)
    return web.Response(
        status=status, body=json.dumps(body).encode(), headers={**headers, "Content-Type": "application/json"}
    )


def _success_headers(method: str, route: str) -> dict[str, str]:
    # A roomy bucket: discord.py reads these on every answer and never needs to wait on them.
    return {
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "49",
        "X-RateLimit-Reset-After": "1.000",
        "X-RateLimit-Bucket": bucket_hash(method, route),
        "X-RateLimit-Scope": "user",
    }


async def _parse_body(request: web.Request) -> tuple[Any, tuple[MultipartPart, ...]]:
    if request.content_type == "multipart/form-data":
        parts = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            data = await part.read()  # type: ignore[union-attr]
            parts.append(
                MultipartPart(
                    name=part.name or "",  # type: ignore[union-attr]
                    filename=part.filename,  # type: ignore[union-attr]
                    content_type=part.headers.get("Content-Type"),  # type: ignore[union-attr]
                    data=bytes(data),
                )
            )
        return None, tuple(parts)
    raw = await request.read()
    if not raw:
        return None, ()
    if request.content_type != "application/json":
        raise errors.bad_request(
            50035, f"Body sent with content type {request.content_type!r}, not application/json"
        )
    try:
        return json.loads(raw), ()
    except ValueError:
        raise errors.bad_request(50109, "The request body contains invalid JSON.") from None


class RestApp:
    """Builds the aiohttp application and records every call through ``fake.log``."""

    def __init__(
        self,
        fake: FakeDiscord,
        routes: list[RouteSpec],
        *,
        websocket: tuple[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
    ) -> None:
        self._fake = fake
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        for spec in routes:
            self.app.router.add_route(spec.method, spec.prefix + spec.template, self._wrap(spec))
        self.app.router.add_get(*websocket)
        self.app.router.add_route("*", "/{tail:.*}", self._not_a_route)

    def _wrap(self, spec: RouteSpec) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, spec)

        return handle

    async def _not_a_route(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, None)

    async def _serve(self, request: web.Request, spec: RouteSpec | None) -> web.StreamResponse:
        path = request.path.removeprefix(spec.prefix if spec is not None else API_PREFIX)
        reason = request.headers.get("X-Audit-Log-Reason")
        unparsable: DiscordError | None = None
        try:
            body_json, parts = await _parse_body(request)
        except DiscordError as exc:
            body_json, parts, unparsable = None, (), exc
        api_request = ApiRequest(
            method=request.method,
            route=spec.template if spec is not None else NOT_A_ROUTE,
            path=path,
            params=dict(request.match_info) if spec is not None else {},
            query=dict(request.query),
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            json=body_json,
            parts=parts,
            reason=urllib.parse.unquote(reason) if reason else None,
        )
        try:
            if unparsable is not None:
                raise unparsable
            status, body, headers = await self._answer(api_request, spec)
            error = None
        except DiscordError as exc:
            error = exc
        except Exception as exc:
            # A bug in the fake, not in the client. Answered 400, not 500: discord.py retries a 500
            # for 25 s before giving up, while a 400 fails the client's call at once; recorded as a
            # violation so that the test fails and names it.
            _log.exception("fake Discord: %s %s failed inside the fake", request.method, path)
            error = DiscordError(400, FAKE_FAILURE, f"the fake failed: {exc!r}", violation=True)
        if error is not None:
            status, body, headers = error.status, error.body(), {}
        self._record(api_request, status, body, error)
        if isinstance(body, bytes):
            return web.Response(status=status, body=body, headers=headers)
        return json_response(status, body, headers)

    async def _answer(self, request: ApiRequest, spec: RouteSpec | None) -> tuple[int, Any, dict[str, str]]:
        """Status, body and headers for a parsed request: auth, then an injected fault, then the handler."""
        if spec is None:
            raise errors.route_not_implemented(request.method, request.path)
        if spec.bot_auth and request.headers.get("Authorization") != f"Bot {self._fake.token}":
            raise errors.unauthorized()
        fault = self._fake.log.take_fault(request.method, request.route)
        if fault is not None:
            body, headers = fault.answer()
            return fault.status, body, headers
        result = await spec.handler(request)
        headers = _success_headers(request.method, request.route)
        if isinstance(result, Answer):
            return result.status, result.body, headers | result.headers
        return (200, result, headers) if result is not None else (204, None, headers)

    def _record(self, request: ApiRequest, status: int, body: Any, error: DiscordError | None) -> None:
        call = RecordedCall(
            index=len(self._fake.log.calls),
            method=request.method,
            route=request.route,
            path=request.path,
            path_params=request.params,
            query=request.query,
            headers=request.headers,
            json=request.json,
            parts=request.parts,
            status=status,
            response=body,
            reason=request.reason,
            at=self._fake.clock.now(),
        )
        violation = None
        if error is not None and error.violation:
            violation = Violation(call=call, code=error.code, message=error.message, errors=error.errors)
            _log.warning("fake Discord: the client broke a rule: %s", violation)
        self._fake.log.record(call, violation)
