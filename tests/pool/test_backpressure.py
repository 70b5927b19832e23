"""Bounded queues, CPU budgets and round-robin: one guild cannot take a worker from the others."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lua_runtime.guild_vm import ScriptSource
from lua_runtime.pool import EventDropped, InMemoryScripts, PoolConfig, VmPool
from tests.pool.conftest import LIMITS, SPINNER, counter, eventually, message, printed

SPIN = ScriptSource("spin", SPINNER)


async def test_a_full_guild_queue_drops_events_counts_them_and_logs_them(clock, caplog) -> None:
    scripts = InMemoryScripts({1: [counter()], 2: [counter()]})
    # idle_seconds sets the housekeeping period (half of it); the fake clock keeps VMs resident.
    config = PoolConfig(strategy="threadpool", workers=1, guild_queue_size=5, idle_seconds=0.2)
    caplog.set_level(logging.WARNING, logger="lua_runtime.pool.facade")
    async with VmPool(scripts, LIMITS, config, clock=clock) as pool:
        accepted, dropped = [], []
        for i in range(20):
            try:
                accepted.append(pool.submit(1, "message", message(str(i))))
            except EventDropped as exc:
                dropped.append(exc)
        other = pool.submit(2, "message", message("x"))
        results = await asyncio.gather(*accepted, other)
        [guild] = (await pool.stats(1)).guilds
        await eventually(lambda: "dropped in the last" in caplog.text)
        # Once the queue drained, the guild is accepted again.
        assert printed(await pool.dispatch(1, "message", message("later"))) == ["later:6"]
    assert len(accepted) == 5 and len(dropped) == 15
    assert all(exc.reason == "queue_full" and exc.guild_id == 1 for exc in dropped)
    assert [printed(r) for r in results] == [[f"{i}:{i + 1}"] for i in range(5)] + [["x:1"]]
    assert guild.dropped_queue_full == 15 and guild.events == 5
    assert "guild 1: events dropped in the last 0.1 s: 15 (in all: 15 queue full" in caplog.text


async def test_a_guild_that_spent_its_cpu_budget_is_dropped_until_its_window_refills(clock) -> None:
    scripts = InMemoryScripts({1: [SPIN], 2: [counter()]})
    # Two events of 20 ms each empty a 30 ms bucket that refills over 100 s of the fake clock.
    # One thread per guild: the guild stays on its worker, with the same bucket, throughout.
    config = PoolConfig(strategy="thread-per-guild", guild_cpu_seconds=0.03, guild_cpu_window_seconds=100)
    async with VmPool(scripts, LIMITS, config, clock=clock) as pool:
        outcomes = []
        for _ in range(4):
            try:
                outcomes.append(await pool.dispatch(1, "message", message("x")))
            except EventDropped as exc:
                outcomes.append(exc)
        quiet = [await pool.dispatch(2, "message", message(str(i))) for i in range(3)]
        clock.now += 100  # a whole window: the bucket is full again
        refilled = await pool.dispatch(1, "message", message("x"))
        [guild] = (await pool.stats(1)).guilds
        stats = await pool.stats()
    ran = [o for o in outcomes if not isinstance(o, EventDropped)]
    dropped = [o for o in outcomes if isinstance(o, EventDropped)]
    assert len(ran) == 2 and all(r.errors[0].kind == "time_limit" for r in ran)
    assert len(dropped) == 2 and all(d.reason == "cpu_budget" for d in dropped)
    assert "CPU budget" in str(dropped[0])
    assert outcomes[:2] == ran  # it ran until the bucket was empty, then was dropped
    assert [printed(r) for r in quiet] == [["0:1"], ["1:2"], ["2:3"]]
    assert refilled.errors[0].kind == "time_limit"
    assert guild.dropped_cpu_budget == 2 and guild.events == 3 and guild.time_limit_hits == 3
    assert stats.dropped_cpu_budget == 2 and not guild.slow_lane


COUNTING_SPINNER = ScriptSource(
    "spin",
    """
local seen = 0
return {
  message = function(msg)
    seen += 1
    print(`{msg.content}:{seen}`)
    while true do end
  end,
}
""",
)


async def test_a_guild_whose_events_hit_the_cpu_limit_moves_to_the_slow_lane_in_order(clock) -> None:
    scripts = InMemoryScripts({1: [COUNTING_SPINNER], 2: [counter()], 3: [counter()]})
    config = PoolConfig(strategy="threadpool", workers=1, guild_cpu_seconds=60, idle_seconds=60)
    async with VmPool(scripts, LIMITS, config, clock=clock) as pool:
        await asyncio.gather(*(pool.dispatch(g, "message", message("a")) for g in (2, 3)))
        [ordinary] = (await pool.stats()).workers
        # Its first event gives it away; the ones its worker has not started follow it to the
        # slow lane, in order, and so do the ones sent while it moves.
        flood = [pool.submit(1, "message", message(str(i))) for i in range(10)]
        quiet = [pool.submit(g, "message", message("b")) for g in (2, 3)]
        await asyncio.gather(*flood, *quiet)
        late = await pool.dispatch(1, "message", message("10"))
        stats = await pool.stats()
        guilds = {g.guild_id: g for g in stats.guilds}
        workers = {w.worker_id: w for w in stats.workers}

        clock.now += 61
        assert pool.evict_idle() == 3
        again = await pool.dispatch(1, "message", message("y"))
        back = await pool.stats(1)
    outputs = [printed(f.result())[0] for f in flood] + printed(late)
    ran_first = next(i for i, line in enumerate(outputs) if i and line.endswith(":1"))
    assert outputs == [f"{i}:{i + 1}" for i in range(ran_first)] + [
        f"{i}:{i - ran_first + 1}" for i in range(ran_first, 11)
    ]
    assert all(f.result().errors[0].kind == "time_limit" for f in flood)
    lane = workers[guilds[1].worker_id]
    assert guilds[1].slow_lane and lane.slow_lane and lane.worker_id != ordinary.worker_id
    assert workers[ordinary.worker_id].time_limit_hits == ran_first
    assert lane.time_limit_hits == 11 - ran_first
    assert guilds[2].worker_id == guilds[3].worker_id == ordinary.worker_id
    assert [printed(f.result()) for f in quiet] == [["b:2"], ["b:2"]]  # same VMs, never moved
    # Once its VM was closed it started over on an ordinary worker, with a fresh VM, and left it
    # again at its first time-limit hit.
    assert printed(again) == ["y:1"]
    back_on = {w.worker_id: w for w in back.workers}
    assert back_on[ordinary.worker_id].time_limit_hits == ran_first + 1
    assert back.guilds[0].slow_lane


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_pool_config_refuses_nonsense(bad) -> None:
    with pytest.raises(ValueError):
        PoolConfig(strategy="threadpool", workers=bad)
    with pytest.raises(ValueError, match="unknown VM strategy"):
        PoolConfig(strategy="processes")
    if bad != 1.5:
        with pytest.raises(ValueError):
            PoolConfig(guild_cpu_seconds=bad)
