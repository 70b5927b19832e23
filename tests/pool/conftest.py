"""Shared pieces of the VM pool tests: scripts, a hand-moved clock, a short CPU limit."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

import pytest

from lua_runtime.events import sample_payload
from lua_runtime.guild_vm import ScriptSource
from lua_runtime.limits import SandboxLimits
from lua_runtime.pool import InMemoryScripts

#: Each event prints "<content>:<how many events this VM has seen>", so the output shows both the
#: order events ran in and whether the VM is the same one as before.
COUNTER = """
local seen = 0
return {
  message = function(msg)
    seen += 1
    print(`{msg.content}:{seen}`)
  end,
}
"""

#: Spends the whole per-event CPU limit on every event.
SPINNER = """
return {
  message = function(msg)
    while true do end
  end,
}
"""

#: A short per-event limit keeps the CPU-heavy tests quick.
LIMITS = SandboxLimits(cpu_ms_per_event=20)


def counter(name: str = "counter") -> ScriptSource:
    return ScriptSource(name, COUNTER)


def printing(name: str, text: str) -> ScriptSource:
    return ScriptSource(name, f'return {{ message = function(msg) print("{text}") end }}')


def message(content: str) -> dict:
    payload = sample_payload("message")
    payload["content"] = content
    return payload


def printed(result) -> list[str]:
    return [line.text for line in result.output]


class FakeClock:
    """Monotonic seconds that a test moves by hand: idleness and CPU windows without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def scripts() -> InMemoryScripts:
    return InMemoryScripts()


async def eventually(condition: Callable[[], object], bound: float = 10.0) -> None:
    """Wait (bounded) until ``condition()`` (a function or a coroutine function) is true; fail the
    test if it never is."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not reached within the bound")
        await asyncio.sleep(0.01)
