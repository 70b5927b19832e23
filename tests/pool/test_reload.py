"""A reload swaps a guild's scripts between two events, never during one."""

from __future__ import annotations

import asyncio

from lua_runtime.guild_vm import ScriptSource
from lua_runtime.pool import InMemoryScripts, PoolConfig, VmPool
from tests.pool.conftest import LIMITS, message, printed, printing


def _version(version: str) -> list[ScriptSource]:
    return [printing("alpha", f"alpha {version}"), printing("beta", f"beta {version}")]


async def test_events_before_a_reload_see_the_old_scripts_and_events_after_see_the_new() -> None:
    scripts = InMemoryScripts({7: _version("v1"), 8: _version("v1")})
    async with VmPool(scripts, LIMITS, PoolConfig(strategy="threadpool", workers=2)) as pool:
        await pool.dispatch(7, "message", message("warm"))
        scripts.set(7, _version("v2"))
        # dispatch() queues its event when called; the reload's task queues it when it starts, at
        # the yield below. So the requests reach the worker in this order: 30 events, the reload,
        # 30 events, while guild 8's events interleave.
        before = [pool.dispatch(7, "message", message("x")) for _ in range(30)]
        others = [pool.dispatch(8, "message", message("x")) for _ in range(30)]
        reload = asyncio.ensure_future(pool.reload(7))
        await asyncio.sleep(0)
        after = [pool.dispatch(7, "message", message("x")) for _ in range(30)]
        await asyncio.gather(*before, *others, reload, *after)
    assert all(printed(f.result()) == ["alpha v1", "beta v1"] for f in before)
    assert all(printed(f.result()) == ["alpha v2", "beta v2"] for f in after)
    assert all(printed(f.result()) == ["alpha v1", "beta v1"] for f in others)
    report = reload.result()
    assert report.ok and report.guild_id == 7 and report.scripts == ("alpha", "beta")
    assert report.handled_events == frozenset({"message"})


async def test_a_reload_reports_load_errors_to_its_caller_and_keeps_serving() -> None:
    scripts = InMemoryScripts({1: _version("v1")})
    callback: list[int] = []
    async with VmPool(
        scripts,
        LIMITS,
        PoolConfig(strategy="threadpool", workers=1),
        on_load_errors=lambda g, e, o: callback.append(g),
    ) as pool:
        scripts.set(1, [printing("alpha", "still here"), ScriptSource("beta", "return {")])
        report = await pool.reload(1)
        result = await pool.dispatch(1, "message", message("x"))
    assert not report.ok and [e.script for e in report.errors] == ["beta"]
    assert report.errors[0].kind == "syntax"
    assert printed(result) == ["still here"]
    assert callback == []  # the caller of reload got the errors; nobody else is told twice


async def test_a_reload_of_a_guild_without_a_vm_builds_one() -> None:
    scripts = InMemoryScripts({3: _version("v1")})
    async with VmPool(scripts, LIMITS, PoolConfig(strategy="threadpool", workers=1)) as pool:
        report = await pool.reload(3)
        [guild] = (await pool.stats(3)).guilds
    assert report.ok and guild.worker_id is not None and guild.memory_bytes
