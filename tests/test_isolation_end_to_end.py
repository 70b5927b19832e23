"""No guild can freeze or crash the bot (issue #16's proof, end to end).

The real bot runs against the Discord stand-in, with the default VM strategy (worker processes) and
with worker threads.
One guild uploads a script of every hostile class the sandbox knows, and triggers each one; the
uploads that the checks refuse are refused with a reason, the scripts that load are stopped by their
limits. Meanwhile a second guild's member keeps posting, and each of their messages must still be
answered; and the gateway's heartbeats, which discord.py sends from its own thread through the bot's
event loop, must keep their cadence: a heartbeat that arrives late at the stand-in is an event loop
that was blocked (by a translation holding the GIL, a stuck worker thread, a crash in progress).

The heartbeat bound is the one timing figure here, and it is loose on purpose: the stand-in asks for
a heartbeat every 0.5 s, and fails the test only when two arrive more than HEARTBEAT_GAP_LIMIT apart.
Before this issue, a single upload held the event loop for 14 s to days.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

from lua_runtime.limits import SandboxLimits
from lua_runtime.pool import PoolConfig
from tests.fakediscord import ChannelRecord, GuildRecord, MemberRecord
from tests.support.harness import WardenHarness, open_harness

HEARTBEAT_MS = 500
#: Two heartbeats further apart than this mean the event loop was held for half a second or more.
HEARTBEAT_GAP_LIMIT = 2 * HEARTBEAT_MS / 1000
MESSAGES = "/channels/{channel_id}/messages"

#: Uploads whose parsing or translation was superlinear, or recursed without bound. Each is either
#: refused (a syntax error, "took too long to compile") or saved: never a hang, never a traceback.
HOSTILE_UPLOADS: dict[str, str] = {
    # Catastrophic backtracking in the string-literal lexer: an unterminated string of escapes.
    "lexer-z": 'local s = "' + "\\z" * 40,
    "lexer-z-spaced": 'local s = "' + "\\z \\\n" * 3000,
    "lexer-escapes": "local s = '" + "\\x4" * 5000,
    "lexer-long-comment": "--[==[" + "]=]" * 15000,
    # Translator cost at the size limit.
    "plus-chain": "local a = 1\nreturn { n = a" + " + a" * 15000 + " }",
    "digits": "local n = " + "1" * 65000 + "z",
    "commas": "local t = {" + "," * 65000 + "}",
    "concat-chain": "local s = 'x'\nlocal t = s" + " .. s" * 12000,
    # Nesting: every parser path ends in a syntax error, never a RecursionError.
    "type-nest": "local x: " + "{" * 3000 + "number" + "}" * 3000 + " = 1",
    "paren-nest": "local x = " + "(" * 5000 + "1" + ")" * 5000,
    "table-nest": "local x = " + "{" * 5000 + "}" * 5000,
    "function-nest": "local f = " + "function() return " * 2500 + "1" + " end" * 2500,
}

#: Scripts that load, and whose message handler attacks the sandbox from inside. Each must end in
#: a reported error (a limit, a refusal) or, for the calls that are cheap once charged by their
#: work, print what it got; and cost nobody else anything.
HOSTILE_SCRIPTS: dict[str, str] = {
    "kv-headroom": """
        local kv = require("@warden/kv")
        return { message = function()
          kv.set("big", string.rep("x", 65000))
          local t = table.create(1000, false)
          for i = 1, 1000 do t[i] = kv.get("big") end
        end }""",
    "rep-empty": 'return { message = function() print(#string.rep("", 2^53)) end }',
    "move-huge": "return { message = function() print(#table.move({}, 1, 2^31 - 2, 2)) end }",
    "sort-nul": """
        return { message = function()
          local s = string.rep("\\0", 1000000)
          local distinct = { s .. "a", s .. "b", s .. "c" }
          local t = {}
          for i = 1, 300 do t[i] = distinct[i % 3 + 1] end
          table.sort(t)
          print("sorted", #t)
        end }""",
    "compare-nul": """
        return { message = function()
          local a = string.rep("\\0", 4000000)
          local n = 0
          while true do if a < a then n += 1 end end
        end }""",
    "coroutine-tree": """
        local function f(d) if d > 0 then coroutine.wrap(f)(d - 1) coroutine.wrap(f)(d - 1) end end
        return { message = function() f(24) end }""",
    "spawn-tree": """
        local function f(d) if d > 0 then task.spawn(f, d - 1) task.spawn(f, d - 1) end end
        return { message = function() f(24) end }""",
    "builder-len": """
        local discord = require("@warden/discord")
        return { message = function(msg)
          local n = 0
          local embeds = setmetatable({}, { __len = function() n += 1; return n == 1 and 1 or 2500 end,
            __index = function() return { title = "x" } end })
          discord.send(msg.channel_id, { embeds = embeds })
        end }""",
    "timer-actions": """
        local discord = require("@warden/discord")
        return { message = function(msg)
          for i = 1, 100 do
            task.delay(0.05, function()
              for j = 1, 20 do discord.send(msg.channel_id, "spam " .. i .. " " .. j) end
            end)
          end
        end }""",
}

PONG = """
local discord = require("@warden/discord")
return { message = function(msg) discord.reply(msg, "pong " .. msg.content) end }
"""


@dataclass
class Bystander:
    """The second guild: its channel, its member, and the pong script answering them."""

    guild: GuildRecord
    channel: ChannelRecord
    member: MemberRecord


def _bystander(h: WardenHarness) -> Bystander:
    guild = h.fake.add_guild(name="Bystander Server")
    return Bystander(guild, h.fake.add_channel(guild, "chat"), h.fake.add_member(guild, "talker"))


#: Seconds between two bystander posts: under the executor's 20 actions per 5 s per server.
TALK_PAUSE = 0.3


async def _keep_talking(h: WardenHarness, other: Bystander, stop: asyncio.Event) -> int:
    """Post in the bystander guild until ``stop``; each post must be answered."""
    sent = 0
    while not stop.is_set():
        await h.fake.send_message(other.channel, other.member, f"ping {sent}")
        sent += 1
        await asyncio.sleep(TALK_PAUSE)
    return sent


def _heartbeat_gaps(h: WardenHarness, since: float) -> list[float]:
    [session] = h.fake.gateway.sessions
    beats = [t for t in session.heartbeats if t >= since]
    return [later - earlier for earlier, later in itertools.pairwise(beats)]


async def _attack(h: WardenHarness) -> list[str]:
    """Upload every hostile source and trigger every hostile script; the bot's answers."""
    answers = []
    for name, source in HOSTILE_UPLOADS.items():
        answer = await h.run(
            "upload", options={"name": name}, attachments=[h.attachment(f"{name}.luau", source)]
        )
        answers.append(f"{name}: {answer.content}")
    for name, source in HOSTILE_SCRIPTS.items():
        answer = await h.upload_script(name, source)
        answers.append(f"{name}: {answer.content}")
        logged = len(await h.storage.recent_run_log(h.guild_id, None, limit=1000))
        await h.send_message(f"trigger {name}")
        # Its error (or, had it taken its worker down, the event's failure) reaches the run log.
        try:
            await h.wait_for_run_log(logged + 1)
        except TimeoutError:
            raise AssertionError(f"{name}: nothing reached the run log") from None
        await h.run("disable", options={"name": name})  # one attack at a time
    return answers


@pytest.mark.parametrize("strategy", ["processpool", "threadpool"])
async def test_an_attacking_guild_costs_the_others_nothing_and_the_heartbeat_keeps_its_cadence(
    tmp_path: Path, strategy: str
) -> None:
    # A guild CPU allowance big enough that every attack runs (rather than being skipped once the
    # attacking guild's allowance is spent): the sandbox's own limits must stop each one. Under
    # processpool the supervisor is the second wall; under threadpool the sandbox is the only one.
    config = PoolConfig(strategy=strategy, workers=2, guild_cpu_seconds=60.0)
    async with open_harness(
        tmp_path, limits=SandboxLimits(), pool_config=config, start=False, heartbeat_interval_ms=HEARTBEAT_MS
    ) as h:
        other = _bystander(h)
        await h.start_bot()
        await h.storage.save_script(other.guild.id, "pong", PONG, other.member.id, ["message"], None)
        await h.bot.scripts_changed(other.guild.id)

        loop = asyncio.get_running_loop()
        started = loop.time()
        stop = asyncio.Event()
        talking = asyncio.create_task(_keep_talking(h, other, stop))
        try:
            answers = await _attack(h)
        finally:
            stop.set()
            sent = await talking
        ended = loop.time()

        # Every bystander message was answered, in order of posting or not.
        await h.fake.wait_for_call("POST", MESSAGES, channel_id=other.channel.id, count=sent, timeout=30)
        replies = [
            call.payload["content"] for call in h.fake.calls("POST", MESSAGES, channel_id=other.channel.id)
        ]
        assert sorted(replies) == sorted(f"pong ping {i}" for i in range(sent))

        # The heartbeat kept its cadence through every attack.
        gaps = _heartbeat_gaps(h, started)
        assert len(gaps) >= (ended - started) / (HEARTBEAT_MS / 1000) - 3, (gaps, ended - started)
        assert max(gaps) < HEARTBEAT_GAP_LIMIT, gaps

        # Every hostile upload got an answer that an admin can act on: saved, or refused with why.
        for answer in answers:
            assert "Saved" in answer or "Created" in answer or "not saved" in answer, answer
            assert "Traceback" not in answer and "RecursionError" not in answer, answer

        # The attacking guild is still served: a plain script runs on its next message (it prints:
        # its action allowance may still be spent by the timers' flood, which is the point).
        await h.upload_script(
            "after", 'return { message = function(msg) print("alive: " .. msg.content) end }'
        )
        await h.send_message("still there?")
        [entry] = await h.wait_for_run_log(script="after")
        assert entry.kind == "print" and entry.message == "alive: still there?"
