"""What the bot asked of the fake: recorded REST calls, rule violations, and injected faults.

Tests assert on recorded calls (``fake.calls(...)``), await the ones the bot makes asynchronously
(``await fake.wait_for_call(...)``), make the next calls fail (``fake.fail_next(...)``), and fail when
the bot broke one of Discord's rules (``fake.assert_no_violations()``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import PATH_PARAMETER_ENTITY, UNKNOWN_ENTITY

T = TypeVar("T")


@dataclass(frozen=True)
class MultipartPart:
    """One part of a multipart body: ``payload_json`` or an uploaded file ``files[n]``."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode()


@dataclass(frozen=True)
class RecordedCall:
    """One HTTP request the fake answered, with what it answered."""

    index: int
    """Position in the call log; pass it (or ``fake.mark()``) as ``since`` to wait for later calls."""
    method: str
    route: str
    """The route template, exactly discord.py's ``Route.path``: ``/channels/{channel_id}/messages``."""
    path: str
    """The concrete path below the API base: ``/channels/1234/messages``."""
    path_params: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]
    """Request headers (case-insensitive)."""
    json: Any
    """The JSON body, or None for an empty or multipart body."""
    parts: tuple[MultipartPart, ...]
    status: int
    response: Any
    """The JSON (or text) answered."""
    reason: str | None
    """The ``X-Audit-Log-Reason`` header, URL-decoded."""
    at: dt.datetime

    @property
    def payload(self) -> Any:
        """The request's JSON payload whether it came as a JSON body or as multipart ``payload_json``."""
        if self.json is not None:
            return self.json
        for part in self.parts:
            if part.name == "payload_json":
                return json.loads(part.data)
        return None

    @property
    def files(self) -> list[MultipartPart]:
        """Uploaded files, in order."""
        return [part for part in self.parts if part.filename is not None]

    def __str__(self) -> str:
        return f"#{self.index} {self.method} {self.path} -> {self.status}"


def flatten_form_errors(errors: Mapping[str, Any] | None, prefix: str = "") -> list[str]:
    """``{"embeds": {"0": {"title": {"_errors": [...]}}}}`` as ``["embeds.0.title: Must be ..."]``."""
    lines: list[str] = []
    for key, value in (errors or {}).items():
        if key == "_errors":
            lines.extend(f"{prefix or '<body>'}: {item['message']}" for item in value)
        elif isinstance(value, Mapping):
            lines.extend(flatten_form_errors(value, f"{prefix}.{key}" if prefix else key))
    return lines


@dataclass(frozen=True)
class Violation:
    """A call that broke a rule Discord enforces, answered with an error."""

    call: RecordedCall
    code: int
    message: str
    errors: Mapping[str, Any] | None = None

    def __str__(self) -> str:
        details = "; ".join(flatten_form_errors(self.errors))
        text = f"{self.call.method} {self.call.path} -> {self.call.status} {self.message} (code {self.code})"
        return f"{text}: {details}" if details else text


@dataclass
class Fault:
    """An error to answer instead of handling the next ``times`` matching calls."""

    method: str
    route: str
    status: int
    times: int = 1
    code: int | None = None
    message: str | None = None
    retry_after: float = 0.05
    is_global: bool = False
    hits: int = 0

    @property
    def exhausted(self) -> bool:
        return self.hits >= self.times

    def answer(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The JSON body and headers of this fault, as Discord would send them."""
        headers: dict[str, str] = {}
        if self.status == 429:
            body: dict[str, Any] = {
                "message": self.message or "You are being rate limited.",
                "retry_after": self.retry_after,
                "global": self.is_global,
                "code": self.code if self.code is not None else 0,
            }
            headers = {
                "Retry-After": str(max(1, math.ceil(self.retry_after))),
                "X-RateLimit-Limit": "1",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + self.retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{self.retry_after:.3f}",
                "X-RateLimit-Bucket": bucket_hash(self.method, self.route),
                "X-RateLimit-Scope": "global" if self.is_global else "user",
                # discord.py treats a 429 without Via as a Cloudflare ban and does not retry it.
                "Via": "1.1 google",
            }
            if self.is_global:
                headers["X-RateLimit-Global"] = "true"
            return body, headers
        code, message = self._default_error()
        return {
            "message": self.message or message,
            "code": self.code if self.code is not None else code,
        }, headers

    def _default_error(self) -> tuple[int, str]:
        if self.status == 403:
            return 50013, "Missing Permissions"
        if self.status == 404:
            # The id Discord would not find is the route's last parameter.
            parameters = [part[1:-1] for part in self.route.split("/") if part.startswith("{")]
            entity = PATH_PARAMETER_ENTITY.get(parameters[-1]) if parameters else None
            return UNKNOWN_ENTITY[entity] if entity else (0, "404: Not Found")
        if self.status == 400:
            return 50035, "Invalid Form Body"
        if self.status == 401:
            return 0, "401: Unauthorized"
        return 0, f"{self.status}: Server Error"


def bucket_hash(method: str, route: str) -> str:
    """A stable rate-limit bucket id per route, like the opaque hashes Discord sends."""
    return hashlib.md5(f"{method} {route}".encode()).hexdigest()


class Notifier:
    """Wakes every waiter when anything the fake records changes; waits never sleep a fixed time.

    The waiting methods built on it take a ``timeout=`` argument (hence the ASYNC109 exemptions): a
    test reads ``await fake.wait_for_call(..., timeout=5)`` and gets an error naming what never came.
    """

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, probe: Callable[[], T | None], timeout: float, describe: Callable[[], str]) -> T:  # noqa: ASYNC109
        """Return ``probe()`` as soon as it is not None; raise TimeoutError naming what was awaited."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = probe()
                    if found is not None:
                        return found
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"after {timeout} s still waiting for {describe()}") from None


@dataclass
class CallLog:
    """The ordered log of calls, violations and pending faults, checked against the known routes."""

    routes: frozenset[tuple[str, str]]
    notifier: Notifier
    calls: list[RecordedCall] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def check_route(self, method: str | None, route: str | None) -> None:
        """Refuse filters naming a route the fake does not serve: such a filter could never match."""
        if route is None:
            return
        known = {r for m, r in self.routes if method is None or m == method.upper()}
        if route not in known:
            close = sorted(r for m, r in self.routes if r.split("/")[:2] == route.split("/")[:2])
            raise ValueError(f"{method or '*'} {route} is not a route the fake serves; similar: {close}")

    def record(self, call: RecordedCall, violation: Violation | None) -> None:
        self.calls.append(call)
        if violation is not None:
            self.violations.append(violation)
        self.notifier.notify()

    def matching(
        self, method: str | None, route: str | None, path_params: Mapping[str, Any], since: int = 0
    ) -> Iterator[RecordedCall]:
        wanted = {key: str(value) for key, value in path_params.items()}
        for call in self.calls[since:]:
            if method is not None and call.method != method.upper():
                continue
            if route is not None and call.route != route:
                continue
            if any(call.path_params.get(key) != value for key, value in wanted.items()):
                continue
            yield call

    def take_fault(self, method: str, route: str) -> Fault | None:
        """The first pending fault for this route, counted as used."""
        for fault in self.faults:
            if fault.method == method and fault.route == route and not fault.exhausted:
                fault.hits += 1
                return fault
        return None
