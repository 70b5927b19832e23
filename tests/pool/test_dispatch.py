"""The facade's everyday path: events in, results out, in order, on either strategy."""

from __future__ import annotations

import asyncio

import pytest

from lua_runtime.guild_vm import ScriptSource
from lua_runtime.pool import InMemoryScripts, PoolConfig, VmPool
from lua_runtime.results import EventResult
from tests.pool.conftest import LIMITS, counter, eventually, message, printed, printing

MODERATOR = ScriptSource(
    "moderator",
    """
local discord = require("@warden/discord")
return {
  message = function(msg)
    if string.find(msg.content, "badword", 1, true) then
      discord.delete_message(msg.channel_id, msg.id)
    end
  end,
}
""",
)


@pytest.mark.parametrize("strategy", ["threadpool", "thread-per-guild"])
async def test_an_event_runs_the_guilds_scripts_and_returns_their_actions(strategy: str) -> None:
    scripts = InMemoryScripts({1: [MODERATOR], 2: [MODERATOR]})
    async with VmPool(scripts, LIMITS, PoolConfig(strategy=strategy, workers=2)) as pool:
        flagged = await pool.dispatch(1, "message", message("this has a badword"))
        clean = await pool.dispatch(2, "message", message("all good"))
    assert isinstance(flagged, EventResult) and flagged.ok
    assert [action["type"] for action in flagged.actions] == ["delete_message"]
    assert flagged.actions[0]["script"] == "moderator"
    assert clean.ok and clean.actions == [] and clean.scripts == ["moderator"]


@pytest.mark.parametrize("strategy", ["threadpool", "thread-per-guild"])
async def test_each_guilds_events_run_in_order_under_concurrency(strategy: str) -> None:
    guilds, per_guild = 24, 30
    scripts = InMemoryScripts({guild: [counter()] for guild in range(guilds)})
    async with VmPool(scripts, LIMITS, PoolConfig(strategy=strategy, workers=3)) as pool:
        # Interleave the guilds, all submitted in one turn, so every worker holds many guilds'
        # events at once.
        futures = {
            (guild, i): pool.submit(guild, "message", message(str(i)))
            for i in range(per_guild)
            for guild in range(guilds)
        }
        results = dict(zip(futures, await asyncio.gather(*futures.values()), strict=True))
        stats = await pool.stats()
    for (guild, i), result in results.items():
        # Event i of a guild is the (i+1)-th its VM saw: nothing of that guild ran out of order.
        assert printed(result) == [f"{i}:{i + 1}"], (guild, i)
    if strategy == "thread-per-guild":
        assert len({g.worker_id for g in stats.guilds}) == guilds
    else:
        assert {w.guilds for w in stats.workers} == {guilds // 3}


async def test_the_threadpool_keeps_a_guild_on_one_worker_for_the_life_of_its_vm() -> None:
    scripts = InMemoryScripts({guild: [counter()] for guild in range(6)})
    async with VmPool(scripts, LIMITS, PoolConfig(strategy="threadpool", workers=2)) as pool:
        for _ in range(3):
            await asyncio.gather(*(pool.dispatch(guild, "message", message("x")) for guild in range(6)))
        placed = {g.guild_id: g.worker_id for g in (await pool.stats()).guilds}
        last = await asyncio.gather(*(pool.dispatch(guild, "message", message("x")) for guild in range(6)))
        again = {g.guild_id: g.worker_id for g in (await pool.stats()).guilds}
    assert placed == again
    assert sorted(placed.values()).count(min(placed.values())) == 3  # least-loaded: 3 and 3
    assert all(printed(result) == ["x:4"] for result in last)  # one VM each, all along


async def test_unknown_events_and_non_plain_payloads_are_refused() -> None:
    scripts = InMemoryScripts({1: [counter()]})
    async with VmPool(scripts, LIMITS, PoolConfig(strategy="threadpool", workers=1)) as pool:
        with pytest.raises(ValueError, match="unknown event"):
            await pool.dispatch(1, "message_bulk_delete", {})
        with pytest.raises(ValueError, match="plain data"):
            await pool.dispatch(1, "message", {"content": object()})
        # The refusal cost nothing: the VM still counts from where it was.
        assert printed(await pool.dispatch(1, "message", message("ok"))) == ["ok:1"]


async def test_load_errors_of_a_vm_built_for_an_event_reach_the_callback_before_the_result() -> None:
    broken = ScriptSource("broken", "return { message = function(msg) print('x') end")
    scripts = InMemoryScripts({1: [broken, printing("fine", "hello")]})
    seen: list[tuple[int, list[str], list[str]]] = []
    order: list[str] = []

    def on_load_errors(guild_id, errors, output) -> None:
        seen.append((guild_id, [e.script for e in errors], [line.text for line in output]))
        order.append("callback")

    async with VmPool(
        scripts, LIMITS, PoolConfig(strategy="threadpool", workers=1), on_load_errors=on_load_errors
    ) as pool:
        result = await pool.dispatch(1, "message", message("x"))
        order.append("result")
        await pool.dispatch(1, "message", message("y"))  # same VM: nothing new to report
    assert seen == [(1, ["broken"], [])]
    assert order == ["callback", "result"]
    assert printed(result) == ["hello"] and result.scripts == ["fine"]


async def test_a_dry_run_goes_through_the_guilds_worker_and_leaves_its_vm_alone() -> None:
    scripts = InMemoryScripts({1: [counter()]})
    async with VmPool(scripts, LIMITS, PoolConfig(strategy="threadpool", workers=1)) as pool:
        assert printed(await pool.dispatch(1, "message", message("a"))) == ["a:1"]
        run = await pool.dry_run(1, MODERATOR, "message", message("a badword here"))
        default_payload = await pool.dry_run(1, MODERATOR, "message")
        failing = await pool.dry_run(1, ScriptSource("oops", "return { message = 42 }"), "message")
        with pytest.raises(ValueError):
            await pool.dry_run(1, MODERATOR, "no_such_event")
        assert printed(await pool.dispatch(1, "message", message("b"))) == ["b:2"]
    assert run.ok and [a["type"] for a in run.actions] == ["delete_message"]
    assert default_payload.ok and default_payload.event == "message"
    assert not failing.ok and failing.error is not None and failing.error.script == "oops"


async def test_stats_count_events_errors_time_limits_and_cpu_per_guild_and_per_script() -> None:
    failing = ScriptSource("failing", "return { message = function(msg) error('boom') end }")
    spinner = ScriptSource("spinner", "return { message = function(msg) while true do end end }")
    scripts = InMemoryScripts({1: [failing, printing("greeter", "hi"), spinner], 2: [counter()]})
    async with VmPool(scripts, LIMITS, PoolConfig(strategy="threadpool", workers=2)) as pool:
        for _ in range(3):
            result = await pool.dispatch(1, "message", message("x"))
        await pool.dispatch(2, "message", message("x"))
        stats = await pool.stats(1)
        everyone = await pool.stats()
    [guild] = stats.guilds
    assert {kind.kind for kind in result.errors} == {"runtime", "time_limit"}
    assert guild.guild_id == 1 and guild.events == 3 and guild.errors == 6
    assert guild.time_limit_hits == 3 and guild.queue_depth == 0
    assert guild.cpu_seconds >= 3 * LIMITS.cpu_ms_per_event / 1000
    # The first time-limit hit sent the guild to the slow lane, with a fresh VM.
    assert guild.slow_lane and guild.vm_builds == 2
    assert guild.memory_bytes is not None and guild.memory_bytes > 0
    assert guild.latency.total == 3 and guild.latency.quantile(0.5) is not None
    per_script = {s.script: s for s in guild.scripts}
    assert per_script["failing"].errors == 3 and per_script["failing"].time_limit_hits == 0
    assert per_script["greeter"].errors == 0 and per_script["greeter"].events == 3
    assert per_script["spinner"].time_limit_hits == 3
    assert sum(s.cpu_seconds for s in guild.scripts) == pytest.approx(guild.cpu_seconds, rel=0.5)
    assert {g.guild_id for g in everyone.guilds} == {1, 2}
    assert sum(w.events for w in everyone.workers) == 4
    assert sum(w.resident_vms for w in everyone.workers) == 2


async def test_thread_per_guild_reaps_a_guilds_thread_when_its_vm_is_closed(clock) -> None:
    scripts = InMemoryScripts({1: [counter()], 2: [counter()]})
    config = PoolConfig(strategy="thread-per-guild", idle_seconds=60)
    async with VmPool(scripts, LIMITS, config, clock=clock) as pool:
        await pool.dispatch(1, "message", message("a"))
        clock.now += 30
        await pool.dispatch(2, "message", message("a"))
        assert len((await pool.stats()).workers) == 2
        clock.now += 31
        assert pool.evict_idle() == 1

        async def reaped() -> bool:
            return len((await pool.stats()).workers) == 1

        await eventually(reaped)
        assert printed(await pool.dispatch(1, "message", message("b"))) == ["b:1"]  # a fresh thread and VM
        assert printed(await pool.dispatch(2, "message", message("b"))) == ["b:2"]
