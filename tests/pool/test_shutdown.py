"""Closing the pool resolves every open request: completed, or failed with PoolClosed."""

from __future__ import annotations

import asyncio

import pytest

from lua_runtime.guild_vm import ScriptSource
from lua_runtime.pool import InMemoryScripts, LoadReport, PoolClosed, PoolConfig, VmPool
from lua_runtime.results import EventResult
from tests.pool.conftest import LIMITS, SPINNER, counter, message

SPIN = ScriptSource("spin", SPINNER)


def _in_flight(pool: VmPool) -> list[asyncio.Future]:
    futures = []
    for i in range(10):
        for guild in range(1, 7):
            futures.append(pool.submit(guild, "message", message(str(i))))
    return futures


@pytest.mark.parametrize("strategy", ["threadpool", "thread-per-guild"])
async def test_closing_without_drain_time_fails_what_did_not_run_and_hangs_nothing(strategy) -> None:
    scripts = InMemoryScripts({g: [SPIN] if g % 2 else [counter()] for g in range(1, 7)})
    pool = VmPool(scripts, LIMITS, PoolConfig(strategy=strategy, workers=2, guild_cpu_seconds=60))
    await pool.start()
    futures = _in_flight(pool)
    reload = asyncio.ensure_future(pool.reload(2))
    await asyncio.sleep(0)  # the reload is sent
    await asyncio.wait_for(pool.close(drain_seconds=0), timeout=30)
    assert all(f.done() for f in futures) and reload.done()
    outcomes = [f.exception() or f.result() for f in [*futures, reload]]
    assert all(isinstance(o, EventResult | LoadReport | PoolClosed) for o in outcomes)
    assert any(isinstance(o, PoolClosed) for o in outcomes)
    with pytest.raises(PoolClosed):
        await pool.dispatch(1, "message", message("too late"))


async def test_closing_with_drain_time_completes_what_the_workers_hold() -> None:
    scripts = InMemoryScripts({g: [counter()] for g in range(1, 7)})
    pool = VmPool(scripts, LIMITS, PoolConfig(strategy="threadpool", workers=2))
    await pool.start()
    futures = _in_flight(pool)
    await asyncio.sleep(0)
    await asyncio.wait_for(pool.close(drain_seconds=10), timeout=30)
    assert all(isinstance(f.result(), EventResult) for f in futures)


async def test_a_pool_is_used_only_between_start_and_close() -> None:
    pool = VmPool(InMemoryScripts(), LIMITS, PoolConfig(strategy="threadpool", workers=1))
    with pytest.raises(RuntimeError, match="not started"):
        await pool.dispatch(1, "message", message("x"))
    async with pool:
        await pool.stats()
    await pool.close()  # closing twice is harmless
    with pytest.raises(PoolClosed):
        await pool.stats()
