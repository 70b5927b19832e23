"""Idle and least-recently-used guild VMs are closed, and rebuilt on demand from stored scripts."""

from __future__ import annotations

import asyncio

from lua_runtime.pool import InMemoryScripts, PoolConfig, VmPool
from tests.pool.conftest import LIMITS, counter, message, printed, printing


async def _placed(pool: VmPool) -> dict[int, int | None]:
    return {g.guild_id: g.worker_id for g in (await pool.stats()).guilds}


async def test_an_idle_vm_is_closed_and_the_next_event_builds_it_from_the_stored_scripts(clock) -> None:
    scripts = InMemoryScripts({1: [counter()], 2: [counter()]})
    async with VmPool(
        scripts, LIMITS, PoolConfig(strategy="threadpool", workers=2, idle_seconds=60), clock=clock
    ) as pool:
        await pool.dispatch(1, "message", message("a"))
        await pool.dispatch(2, "message", message("a"))
        clock.now += 45
        assert printed(await pool.dispatch(2, "message", message("b"))) == ["b:2"]
        clock.now += 20
        assert pool.evict_idle() == 1  # guild 1 idle for 65 s; guild 2 for 20 s
        assert (await _placed(pool)) == {1: None, 2: (await _placed(pool))[2]}

        scripts.set(1, [printing("greeter", "new script")])
        assert printed(await pool.dispatch(1, "message", message("c"))) == ["new script"]
        assert printed(await pool.dispatch(2, "message", message("c"))) == ["c:3"]
        [guild] = (await pool.stats(1)).guilds
    assert guild.evictions == 1 and guild.vm_builds == 2 and guild.worker_id is not None


async def test_past_the_maximum_the_least_recently_used_vm_is_closed_first() -> None:
    scripts = InMemoryScripts({guild: [counter()] for guild in range(1, 6)})
    async with VmPool(
        scripts, LIMITS, PoolConfig(strategy="threadpool", workers=2, max_resident_vms=3)
    ) as pool:
        for guild in (1, 2, 3):
            await pool.dispatch(guild, "message", message("a"))
        await pool.dispatch(1, "message", message("b"))  # 2 is now the least recently used
        await pool.dispatch(4, "message", message("a"))
        placed = await _placed(pool)
        assert [g for g, worker in placed.items() if worker is not None] == [1, 3, 4]
        await pool.dispatch(5, "message", message("a"))  # 3 goes next
        placed = await _placed(pool)
        assert [g for g, worker in placed.items() if worker is not None] == [1, 4, 5]
        resident = sum(w.resident_vms for w in (await pool.stats()).workers)
        # Guild 1 kept its VM throughout; guild 2 comes back with a fresh one.
        assert printed(await pool.dispatch(1, "message", message("c"))) == ["c:3"]
        assert printed(await pool.dispatch(2, "message", message("c"))) == ["c:1"]
    assert resident == 3


async def test_a_guild_with_requests_in_flight_is_never_evicted(clock) -> None:
    scripts = InMemoryScripts({1: [counter()], 2: [counter()]})
    config = PoolConfig(strategy="threadpool", workers=1, idle_seconds=60, max_resident_vms=1)
    async with VmPool(scripts, LIMITS, config, clock=clock) as pool:
        first = [pool.submit(1, "message", message(str(i))) for i in range(20)]
        clock.now += 120
        assert pool.evict_idle() == 0  # idle by the clock, but it has events open
        # Guild 2 needs room, but guild 1 cannot move without risking its order: both stay.
        second = pool.submit(2, "message", message("x"))
        results = await asyncio.gather(*first, second)
    assert [printed(r) for r in results[:-1]] == [[f"{i}:{i + 1}"] for i in range(20)]
    assert printed(results[-1]) == ["x:1"]
