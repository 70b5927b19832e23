"""A worker that dies costs its guilds their VMs and their open requests, nothing more."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from lua_runtime.guild_vm import GuildVM, ScriptSource
from lua_runtime.pool import (
    InMemoryScripts,
    PoolConfig,
    ScriptsUnavailable,
    VmFailed,
    VmPool,
    WorkerCrashed,
)
from tests.pool.conftest import LIMITS, counter, eventually, message, printed


def _vms_of(guilds: range) -> list[weakref.ref]:
    """Weak references to the live VMs of ``guilds`` (ids no other test uses)."""
    gc.collect()
    return [weakref.ref(o) for o in gc.get_objects() if isinstance(o, GuildVM) and o.guild_id in guilds]


def _all_gone(refs: list[weakref.ref]) -> bool:
    gc.collect()
    return all(ref() is None for ref in refs)


async def test_a_crashed_worker_fails_its_open_requests_and_its_guilds_start_fresh_elsewhere() -> None:
    guilds = range(8)
    scripts = InMemoryScripts({guild: [counter()] for guild in guilds})
    async with VmPool(scripts, LIMITS, PoolConfig(strategy="threadpool", workers=2)) as pool:
        for i in range(3):
            await asyncio.gather(*(pool.dispatch(g, "message", message(str(i))) for g in guilds))
        before = {g.guild_id: g.worker_id for g in (await pool.stats()).guilds}
        doomed_worker = before[0]
        doomed = sorted(g for g, w in before.items() if w == doomed_worker)
        spared = sorted(g for g, w in before.items() if w != doomed_worker)

        # Events for every guild, then the fault, in one turn of the loop: the crashing worker
        # receives them in the same batch as the fault and never runs them.
        in_flight = {(g, i): pool.submit(g, "message", message(f"late{i}")) for i in range(5) for g in guilds}
        await pool.inject_fault(0)
        outcomes = await asyncio.gather(*in_flight.values(), return_exceptions=True)
        outcome = dict(zip(in_flight, outcomes, strict=True))

        after = await asyncio.gather(*(pool.dispatch(g, "message", message("next")) for g in guilds))
        stats = await pool.stats()

    for (guild, i), result in outcome.items():
        if guild in doomed:
            assert isinstance(result, WorkerCrashed) and result.guild_id == guild
            assert "crashed" in str(result)
        else:
            # The other worker's guilds lost nothing and kept their order and their VMs.
            assert printed(result) == [f"late{i}:{4 + i}"]
    for guild, result in zip(guilds, after, strict=True):
        assert printed(result) == (["next:1"] if guild in doomed else ["next:9"])
    assert stats.worker_crashes == 1
    assert doomed_worker not in {w.worker_id for w in stats.workers}
    assert len(stats.workers) == 2  # replaced
    by_guild = {g.guild_id: g for g in stats.guilds}
    assert all(by_guild[g].failed == 5 and by_guild[g].vm_builds == 2 for g in doomed)
    assert all(by_guild[g].failed == 0 and by_guild[g].vm_builds == 1 for g in spared)
    assert spared, "the guilds were spread over both workers"


async def test_the_crashed_workers_vms_are_gone_not_held_anywhere() -> None:
    guilds = range(9_000_001, 9_000_005)
    scripts = InMemoryScripts({guild: [counter()] for guild in guilds})
    async with VmPool(scripts, LIMITS, PoolConfig(strategy="threadpool", workers=1)) as pool:
        await asyncio.gather(*(pool.dispatch(g, "message", message("x")) for g in guilds))
        held = _vms_of(guilds)
        assert len(held) == 4
        await pool.inject_fault(guilds[0])
        # Only the worker referred to its VMs; once it crashed, they are gone.
        await eventually(lambda: _all_gone(held))
        assert printed(await pool.dispatch(guilds[2], "message", message("y"))) == ["y:1"]
        assert [ref().guild_id for ref in _vms_of(guilds)] == [guilds[2]]


async def test_repeated_crashes_keep_the_pool_serving() -> None:
    scripts = InMemoryScripts({1: [counter()], 2: [counter()]})
    # Each crash is a young death: a short back-off keeps the test quick (test_restart_backoff.py).
    config = PoolConfig(
        strategy="threadpool", workers=2, restart_backoff_seconds=0.01, restart_backoff_max_seconds=0.05
    )
    async with VmPool(scripts, LIMITS, config) as pool:
        for round_ in range(3):
            await pool.inject_fault(1)
            results = await asyncio.gather(*(pool.dispatch(g, "message", message("r")) for g in (1, 2)))
            assert printed(results[0]) == ["r:1"], round_
        stats = await pool.stats()
    assert stats.worker_crashes == 3 and len(stats.workers) == 2


class FlakyScripts(InMemoryScripts):
    """A store that cannot be read for one guild."""

    def scripts_for(self, guild_id: int):
        if guild_id == 13:
            raise OSError("database is locked")
        return super().scripts_for(guild_id)


async def test_unreadable_scripts_fail_that_guilds_event_and_nothing_else() -> None:
    scripts = FlakyScripts({1: [counter()]})
    async with VmPool(scripts, LIMITS, PoolConfig(strategy="threadpool", workers=1)) as pool:
        with pytest.raises(ScriptsUnavailable, match="database is locked") as caught:
            await pool.dispatch(13, "message", message("x"))
        assert caught.value.guild_id == 13
        with pytest.raises(ScriptsUnavailable):
            await pool.reload(13)
        assert printed(await pool.dispatch(1, "message", message("x"))) == ["x:1"]
        assert (await pool.stats()).worker_crashes == 0


async def test_an_unexpected_error_from_one_guilds_vm_costs_that_guild_alone() -> None:
    # A source that is not text makes GuildVM itself raise: a fault of the host, not of a script.
    scripts = InMemoryScripts({1: [counter()], 2: [ScriptSource("broken", None)]})  # type: ignore[arg-type]
    async with VmPool(scripts, LIMITS, PoolConfig(strategy="threadpool", workers=1)) as pool:
        assert printed(await pool.dispatch(1, "message", message("a"))) == ["a:1"]
        with pytest.raises(VmFailed, match="building its VM") as caught:
            await pool.dispatch(2, "message", message("a"))
        assert printed(await pool.dispatch(1, "message", message("b"))) == ["b:2"]
        stats = await pool.stats()
    assert caught.value.guild_id == 2
    assert stats.worker_crashes == 0
    assert {g.guild_id: g.failed for g in stats.guilds} == {1: 0, 2: 1}
