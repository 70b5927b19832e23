"""Memory and time, end to end (issue #10): ``@warden/kv`` and the ``task`` library through the real bot,
the Discord stand-in, real SQLite files and the real VM pool.

Time is a clock the test moves: the pool (and so its worker's timers) runs on it, and moving it is
followed by a stats request, which wakes the worker to find its due timers. Nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.storage import migrate
from lua_runtime.events import sample_payload
from lua_runtime.guild_vm import ScriptSource
from lua_runtime.kv_store import KVStore
from lua_runtime.limits import SandboxLimits
from lua_runtime.pool import InMemoryScripts, PoolConfig, VmPool
from lua_runtime.results import EventResult
from tests.support import harness
from tests.support.harness import WardenHarness, open_harness

pytestmark = pytest.mark.slow

MESSAGES = "/channels/{channel_id}/messages"
MESSAGE = "/channels/{channel_id}/messages/{message_id}"
MEMBER = "/guilds/{guild_id}/members/{user_id}"


class Clock:
    """Seconds that only the test moves: the pool's monotonic clock, and the KV store's wall clock."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def advance(pool: VmPool, clock: Clock, seconds: float) -> None:
    """Move the clock, then wake the workers (with a stats request) so that they see it moved."""
    clock.now += seconds
    await pool.stats()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def warden(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[WardenHarness]:
    """The stand-in and the bot, with the bot's VM pool on ``clock``."""
    monkeypatch.setattr(harness, "VmPool", functools.partial(VmPool, clock=clock))
    async with open_harness(tmp_path) as h:
        yield h


# --- strikes that outlive the bot, actions that wait ------------------------------------------------

STRIKES = """local discord = require("@warden/discord")
local kv = require("@warden/kv")

local READING_TIME = 10 -- seconds the member has to read the warning before their message goes

return {
  message = function(msg)
    if not string.find(msg.content:lower(), "badword", 1, true) then return end
    local strikes = kv.incr(`strikes:{msg.author.id}`)
    discord.reply(msg, `Please keep it civil, <@{msg.author.id}> (warning {strikes}/3)`)
    task.wait(READING_TIME)
    discord.delete_message(msg.channel_id, msg.id)
    if strikes >= 3 then discord.timeout(msg.author.id, 600, "3 warnings") end
  end,
}
"""


async def _strike(h: WardenHarness, clock: Clock, number: int) -> None:
    """The member posts a banned word: the warning now, the deletion once the reading time is over."""
    mark = h.fake.mark()
    message = await h.send_message(f"you are a BADWORD ({number})")
    reply = await h.fake.wait_for_call("POST", MESSAGES, since=mark, channel_id=h.general.id)
    assert reply.payload["content"] == f"Please keep it civil, <@{h.member.id}> (warning {number}/3)"
    assert not message.deleted  # the handler waits: its deletion has not been asked for yet
    await advance(h.bot.pool, clock, 10)
    deletion = await h.fake.wait_for_call("DELETE", MESSAGE, since=mark, message_id=message.id)
    assert deletion.index > reply.index and message.deleted


async def test_warn_three_times_then_time_out_with_strikes_that_survive_a_restart(
    warden: WardenHarness, clock: Clock
) -> None:
    h = warden
    await h.upload_script("strikes", STRIKES, grant="delete, timeout")
    await _strike(h, clock, 1)
    await _strike(h, clock, 2)
    assert h.fake.calls("PATCH", MEMBER) == []

    await h.restart()  # the strikes are in the database; the VM and its timers start over

    assert await h.storage.kv_get(h.guild_id, f"strikes:{h.member.id}") == 2
    await _strike(h, clock, 3)
    # Issued after the wait, the timeout still carries the script's name, so its grant applies.
    timeout = await h.fake.wait_for_call("PATCH", MEMBER, guild_id=h.guild_id, user_id=h.member.id)
    assert timeout.payload["communication_disabled_until"] is not None
    assert timeout.reason == "Warden script strikes: 3 warnings"


# --- a timer after a reload ------------------------------------------------------------------------

LATE = """local discord = require("@warden/discord")
return {
  message = function(msg)
    if msg.content == "later" then
      task.delay(60, discord.send, msg.channel_id, "VERSION, a minute later")
      print("armed VERSION")
    end
  end,
}
"""


async def test_a_reload_drops_the_old_scripts_timers_and_the_new_ones_work(
    warden: WardenHarness, clock: Clock
) -> None:
    h = warden
    await h.upload_script("late", LATE.replace("VERSION", "version 1"))
    await h.send_message("later")
    await h.wait_for_run_log(1, script="late")  # version 1's timer is set
    await h.upload_script("late", LATE.replace("VERSION", "version 2"))  # a new version: the VM reloads
    mark = h.fake.mark()
    await h.send_message("later")
    await h.wait_for_run_log(2, script="late")
    await advance(h.bot.pool, clock, 60)  # both timers would be due now
    sent = await h.fake.wait_for_call("POST", MESSAGES, since=mark, channel_id=h.general.id)
    assert sent.payload["content"] == "version 2, a minute later"
    posted = [call.payload["content"] for call in h.fake.calls("POST", MESSAGES, channel_id=h.general.id)]
    assert posted == ["version 2, a minute later"]


# --- quota errors ----------------------------------------------------------------------------------


async def test_timer_quota_errors_and_a_failing_timer_are_reported_with_their_lines(
    warden: WardenHarness, clock: Clock
) -> None:
    h = warden
    await h.run("config", options={"error_channel": h.error_channel})
    # Loaded (and run) in alphabetical order; they share the server's 100 pending timers.
    await h.upload_script(
        "a_fails_later",
        'return { message = function(msg)\n  task.wait(5)\n  error("five seconds on")\nend }\n',
    )
    await h.upload_script("b_patient", "return { message = function(msg)\n  task.wait(3600)\nend }\n")
    await h.upload_script(
        "c_busy",
        "return { message = function(msg)\n  for i = 1, 200 do\n    task.delay(60, print, i)\n  end\nend }\n",
    )
    await h.send_message("go")
    reports = await h.fake.wait_for_call("POST", MESSAGES, channel_id=h.error_channel.id, count=2)
    await advance(h.bot.pool, clock, 5)
    await h.fake.wait_for_call("POST", MESSAGES, since=reports.index + 1, channel_id=h.error_channel.id)
    embeds = [
        call.payload["embeds"][0] for call in h.fake.calls("POST", MESSAGES, channel_id=h.error_channel.id)
    ]
    assert [(embed["title"], embed["description"]) for embed in embeds] == [
        ("Script b_patient", "Limit reached (line 2): task.wait(3600): the longest wait is 900 seconds"),
        (
            "Script c_busy",
            "Limit reached (line 3): too many pending timers (the limit is 100 per server: waits, delays "
            "and defers not run yet)",
        ),
        ("Script a_fails_later", "Runtime error (line 3): five seconds on"),
    ]


# --- joins per minute, with expiring keys and a summary timer ---------------------------------------

JOINS_PER_MINUTE = """local discord = require("@warden/discord")
local kv = require("@warden/kv")

local KEY = "joins_per_minute:count"
local BUSY = 5

return {
  member_join = function(event)
    local joins = kv.incr(KEY)
    if joins == 1 then
      kv.set(KEY, joins, 60) -- the window: the minute after its first join
      task.delay(59, function() -- its summary, just before the key expires
        local total = kv.get(KEY) or 0
        print(`{total} joins this minute`)
        if total >= BUSY then
          discord.log(`{total} members joined in the last minute`)
        end
      end)
    end
  end,
}
"""


class TimerResults:
    """The pool's ``on_timer_result`` callback, as a queue the test reads."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[int, EventResult]] = asyncio.Queue()

    def __call__(self, guild_id: int, result: EventResult) -> None:
        self.queue.put_nowait((guild_id, result))

    async def next(self) -> EventResult:
        _, result = await asyncio.wait_for(self.queue.get(), 10)
        return result


def join(user_id: int) -> dict:
    return {
        "guild_id": "1",
        "member": {
            "id": str(1100000000000000000 + user_id),
            "username": f"user{user_id}",
            "display_name": f"User {user_id}",
            "bot": False,
            "roles": [],
            "account_age_days": 30.0,
            "joined_at": "2026-11-24T10:00:00+00:00",
        },
    }


@pytest.fixture
async def joins_pool(tmp_path: Path, clock: Clock) -> AsyncIterator[tuple[VmPool, TimerResults]]:
    limits = SandboxLimits()
    results = TimerResults()
    database = tmp_path / "warden.db"
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as conn:
        migrate(conn)
    with KVStore(database, limits, clock=clock) as kv:
        scripts = InMemoryScripts({1: [ScriptSource("joins", JOINS_PER_MINUTE)]}, kv_store=kv)
        async with VmPool(
            scripts,
            limits,
            PoolConfig(strategy="threadpool", workers=1),
            on_timer_result=results,
            clock=clock,
        ) as pool:
            yield pool, results


async def test_joins_per_minute_with_expiring_keys(
    joins_pool: tuple[VmPool, TimerResults], clock: Clock
) -> None:
    pool, results = joins_pool
    for n in range(6):
        assert (await pool.dispatch(1, "member_join", join(n))).ok
        await advance(pool, clock, 2)
    await advance(pool, clock, 59 - 12)
    busy = await results.next()
    assert printed(busy) == ["6 joins this minute"]
    assert busy.actions == [
        {"content": "6 members joined in the last minute", "script": "joins", "type": "log"}
    ]
    await advance(pool, clock, 2)  # the minute is over: its key expired
    await pool.dispatch(1, "member_join", join(7))  # opens a new window, with one join
    await advance(pool, clock, 59)
    quiet = await results.next()
    assert quiet.ok and printed(quiet) == ["1 joins this minute"] and quiet.actions == []


# --- eviction and reset ----------------------------------------------------------------------------

REMINDER = """return {
  message = function(msg)
    task.delay(tonumber(msg.content), print, "reminder " .. msg.content)
  end,
}
"""


@pytest.fixture
async def reminder_pool(clock: Clock) -> AsyncIterator[tuple[VmPool, TimerResults]]:
    results = TimerResults()
    scripts = InMemoryScripts(
        {1: [ScriptSource("reminder", REMINDER)], 2: [ScriptSource("reminder", REMINDER)]}
    )
    config = PoolConfig(strategy="threadpool", workers=1, idle_seconds=60, max_resident_vms=1)
    async with VmPool(scripts, SandboxLimits(), config, on_timer_result=results, clock=clock) as pool:
        yield pool, results


def message(content: str) -> dict:
    return {**sample_payload("message"), "content": content}


def printed(result: EventResult) -> list[str]:
    return [line.text for line in result.output]


async def test_idle_eviction_keeps_a_vm_with_timers_and_a_reset_drops_them(
    reminder_pool: tuple[VmPool, TimerResults], clock: Clock
) -> None:
    pool, results = reminder_pool
    await pool.dispatch(1, "message", message("600"))
    await advance(pool, clock, 120)  # idle for twice idle_seconds, but a timer is pending
    assert pool.evict_idle() == 0
    await advance(pool, clock, 480)
    assert printed(await results.next()) == ["reminder 600"]
    await advance(pool, clock, 120)
    assert pool.evict_idle() == 1  # nothing pending any more: now it is idle

    await pool.dispatch(1, "message", message("30"))
    await pool.reset(1)
    await pool.dispatch(1, "message", message("40"))  # a fresh VM, with a timer of its own
    await advance(pool, clock, 40)
    assert printed(await results.next()) == ["reminder 40"]  # the reset VM's timer never ran
    assert results.queue.empty()


async def test_closing_a_vm_to_make_room_drops_its_timers_and_says_so(
    reminder_pool: tuple[VmPool, TimerResults], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    pool, results = reminder_pool
    await pool.dispatch(1, "message", message("30"))
    with caplog.at_level(logging.WARNING, logger="lua_runtime.pool.facade"):
        await pool.dispatch(2, "message", message("60"))  # room for one VM only: guild 1's goes
    assert "guild 1: its VM is closed to make room (1 resident); 1 pending timers dropped" in caplog.text
    await advance(pool, clock, 60)
    assert printed(await results.next()) == ["reminder 60"]
    assert results.queue.empty()
