"""Variants of issue #16's classes through the real bot, against the Discord stand-in.

What a guild's scripts make the bot write is bounded for every other guild's sake: the run-log
rows of an event (one per print line) and the reports posted to the error channel. The bystander
guild is answered throughout. The event loop's lag is watched by a ticker, loosely: a tick more
than LOOP_LAG_LIMIT late means the loop was held; no other timing is asserted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lua_runtime.limits import SandboxLimits
from lua_runtime.pool import PoolConfig
from tests.support.harness import open_harness
from tests.test_isolation_end_to_end import MESSAGES, PONG, _bystander

#: A tick of the ticker later than this means the event loop was held (it is meant to be ~100 ms
#: at most; the margin is for a shared machine).
LOOP_LAG_LIMIT = 1.0
TICK = 0.02

#: Scripts that fail on every message, each with an error of its own: one report each per minute
#: was 8 embeds a minute for the guild (25 with a full guild).
FAILING_SCRIPTS = 8
FAILING = 'return { message = function(msg) error("broken " .. msg.content) end }'
FLOOD = "return { message = function() while true do print() end end }"


async def _ticker(stop: asyncio.Event, lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(TICK)
        lags.append(loop.time() - before - TICK)


@pytest.mark.parametrize("strategy", ["processpool", "threadpool"])
async def test_a_guild_of_failing_and_printing_scripts_writes_a_bounded_log_and_few_reports(
    tmp_path: Path, strategy: str
) -> None:
    config = PoolConfig(strategy=strategy, workers=2, guild_cpu_seconds=60.0)
    limits = SandboxLimits(cpu_ms_per_event=50)
    async with open_harness(tmp_path, limits=limits, pool_config=config, start=False) as h:
        other = _bystander(h)
        await h.start_bot()
        await h.storage.save_script(other.guild.id, "pong", PONG, other.member.id, ["message"], None)
        await h.bot.scripts_changed(other.guild.id)
        await h.run("config", options={"error_channel": h.error_channel})
        # Saved directly (uploads are tested elsewhere): the test is about what the events write.
        scripts = [(f"failing-{i}", FAILING) for i in range(FAILING_SCRIPTS)] + [("flood", FLOOD)]
        for name, source in scripts:
            await h.storage.save_script(h.guild_id, name, source, h.admin.id, ["message"], None)
        await h.bot.scripts_changed(h.guild_id)

        stop, lags = asyncio.Event(), []
        ticking = asyncio.create_task(_ticker(stop, lags))
        try:
            for i in range(3):
                await h.send_message(f"m{i}")
                await h.fake.send_message(other.channel, other.member, f"ping {i}")
            # Every event of the guild has run (the run log itself keeps only its newest 200 rows).
            for _ in range(750):
                [stats] = (await h.bot.pool.stats(h.guild_id)).guilds
                if stats.events >= 3:
                    break
                await asyncio.sleep(0.02)
            # And its last event's rows are written (the time limit is the flood's last row).
            await h.wait_for_run_log(script="flood")
            await h.fake.wait_for_call("POST", MESSAGES, channel_id=other.channel.id, count=3, timeout=30)
        finally:
            stop.set()
            await ticking

        flood_rows = await h.storage.recent_run_log(h.guild_id, "flood", limit=1000)
        # Newest first: the last event's time limit, its 100 lines (the last one saying it was cut),
        # then the event before's time limit: 101 rows per event, where there were 4,097.
        time_limit = "Time limit exceeded (line 1): time limit exceeded (50 ms of CPU per event)"
        messages = [row.message for row in flood_rows]
        assert messages[:2] == [time_limit, "... (print output cut: 100 lines per event)"], messages[:2]
        assert messages[2:101] == [""] * 99 and messages[101] == time_limit, messages[99:102]
        reports = h.fake.calls("POST", MESSAGES, channel_id=h.error_channel.id)
        assert 1 <= len(reports) <= 5, len(reports)
        assert max(lags) < LOOP_LAG_LIMIT, max(lags)
