"""The product's scenarios, end to end: the real bot, the local Discord stand-in, real SQLite, real VMs.

Each test is a story an admin would tell: "I uploaded a banned-words script and the third strike
timed the member out", "a broken script was reported and the bot kept going", "we restarted and
nothing was lost", "Discord refused a kick and we were told why".
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from lua_runtime.limits import SandboxLimits
from lua_runtime.pool import PoolConfig
from tests.support.harness import WardenHarness, open_harness, warden

__all__ = ["warden"]  # the fixture, used by name below

pytestmark = pytest.mark.slow

MESSAGES = "/channels/{channel_id}/messages"
MESSAGE = "/channels/{channel_id}/messages/{message_id}"
MEMBER = "/guilds/{guild_id}/members/{user_id}"

STRIKES = """local discord = require("@warden/discord")
local kv = require("@warden/kv")

local BANNED: {string} = {"badword", "scamlink.example"}

return {
  message = function(msg)
    local text = msg.content:lower()
    for _, word in BANNED do
      if string.find(text, word, 1, true) then
        discord.delete_message(msg.channel_id, msg.id)
        local n = kv.incr(`warnings:{msg.author.id}`)
        discord.reply(msg, `Please keep it civil, <@{msg.author.id}> (warning {n}/3)`)
        if n >= 3 then discord.timeout(msg.author.id, 600, "3 warnings") end
        return
      end
    end
  end,
}
"""


async def test_banned_words_warn_twice_then_time_out(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("strikes", STRIKES, grant="delete, timeout")
    for strike in range(1, 4):
        mark = h.fake.mark()
        message = await h.send_message(f"you are a BADWORD, strike {strike}")
        await h.fake.wait_for_call("DELETE", MESSAGE, since=mark, channel_id=h.general.id)
        [reply] = [
            call for call in await _wait_replies(h, mark) if call.payload["message_reference"]["message_id"]
        ]
        assert message.deleted
        assert reply.payload["content"] == f"Please keep it civil, <@{h.member.id}> (warning {strike}/3)"
        # No pings, ever: the reply names the member but must not notify anyone.
        mentions = reply.payload["allowed_mentions"]
        assert mentions["parse"] == [] and not mentions.get("replied_user", False)
    timeout = await h.fake.wait_for_call("PATCH", MEMBER, guild_id=h.guild_id, user_id=h.member.id)
    assert timeout.payload["communication_disabled_until"] is not None
    assert timeout.reason == "Warden script strikes: 3 warnings"
    assert len(h.fake.calls("PATCH", MEMBER)) == 1  # only the third strike times out


async def _wait_replies(h: WardenHarness, mark: int) -> list:
    await h.fake.wait_for_call("POST", MESSAGES, since=mark, channel_id=h.general.id)
    return [call for call in h.fake.calls("POST", MESSAGES, channel_id=h.general.id) if call.index >= mark]


async def test_a_member_without_manage_server_is_refused_every_command(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("strikes", STRIKES, grant="delete")
    refused = []
    for subcommand, options in (
        ("list", {}),
        ("show", {"name": "strikes"}),
        ("disable", {"name": "strikes"}),
        ("delete", {"name": "strikes"}),
        ("logs", {}),
        ("stats", {}),
        ("config", {}),
        ("grant", {"name": "strikes", "capabilities": "ban"}),
        ("kv list", {}),
    ):
        answer = await h.run(subcommand, member=h.member, options=options)
        assert answer.ephemeral
        refused.append("Manage Server" in answer.content)
    assert all(refused)
    record = await h.storage.get_script(h.guild_id, "strikes")
    assert record is not None and record.enabled and record.capabilities == ("delete",)


LOOPS_ON_HELLO = """local discord = require("@warden/discord")
return {
  message = function(msg)
    if msg.content == "hello" then
      while true do end
    end
    discord.reply(msg, "still here")
  end,
}
"""


async def test_a_script_that_loops_is_reported_and_the_next_message_is_handled(warden: WardenHarness) -> None:
    h = warden
    await h.run("config", options={"error_channel": h.error_channel})
    await h.upload_script("looper", LOOPS_ON_HELLO)
    await h.send_message("hello")
    report = await h.fake.wait_for_call("POST", MESSAGES, channel_id=h.error_channel.id)
    [embed] = report.payload["embeds"]
    assert embed["title"] == "Script looper"
    assert (
        embed["description"] == "Time limit exceeded (line 5): time limit exceeded (100 ms of CPU per event)"
    )
    mark = h.fake.mark()
    await h.send_message("anything else")
    reply = await h.fake.wait_for_call("POST", MESSAGES, since=mark, channel_id=h.general.id)
    assert reply.payload["content"] == "still here"
    [logged] = await h.wait_for_run_log(1, script="looper")
    assert logged.kind == "error" and "line 5" in logged.message


async def test_scripts_enabled_state_and_kv_survive_a_restart(tmp_path: Path) -> None:
    async with open_harness(tmp_path) as h:
        await h.upload_script("strikes", STRIKES, grant="delete, timeout")
        await h.upload_script("quiet", "return { member_join = function() end }\n")
        await h.run("disable", options={"name": "quiet"})
        mark = h.fake.mark()
        await h.send_message("badword once")
        await h.fake.wait_for_call("DELETE", MESSAGE, since=mark)

        await h.restart()

        listed = await h.run("list")
        assert "**strikes**: enabled" in listed.content and "**quiet**: disabled" in listed.content
        assert await h.storage.kv_get(h.guild_id, f"warnings:{h.member.id}") == 1
        mark = h.fake.mark()
        await h.send_message("badword twice")
        replies = await _wait_replies(h, mark)
        assert replies[0].payload["content"].endswith("(warning 2/3)")


KICKER = """local discord = require("@warden/discord")
return {
  message = function(msg)
    if msg.content == "!kickme" then discord.kick(msg.author.id, "asked for it") end
  end,
}
"""


async def test_a_refused_kick_is_reported_to_the_guild_and_nothing_crashes(warden: WardenHarness) -> None:
    h = warden
    await h.run("config", options={"error_channel": h.error_channel})
    await h.upload_script("kicker", KICKER, grant="kick")
    h.fake.fail_next("DELETE", MEMBER, status=403, code=50013, message="Missing Permissions")
    await h.send_message("!kickme")
    report = await h.fake.wait_for_call("POST", MESSAGES, channel_id=h.error_channel.id)
    [embed] = report.payload["embeds"]
    assert embed["title"] == "Script kicker"
    assert embed["description"] == (
        "Action failed: kick refused by Discord: Warden needs Kick Members, and a role above the member's"
    )
    assert h.member.id in h.fake.state.guilds[h.guild_id].members  # the member is still there
    # The bot goes on: the next kick goes through.
    await h.send_message("!kickme")
    await h.fake.wait_for_call("DELETE", MEMBER, guild_id=h.guild_id, user_id=h.member.id, count=2)
    assert h.member.id not in h.fake.state.guilds[h.guild_id].members


SLOW_ON_HELLO = """local discord = require("@warden/discord")
local kv = require("@warden/kv")
return {
  message = function(msg)
    if msg.content == "hello" then
      kv.set("started", true)
      local started = os.clock()
      while os.clock() - started < 20 do end
    end
    discord.reply(msg, "still here")
  end,
}
"""


async def test_a_worker_process_killed_mid_event_is_reported_and_the_guild_recovers(tmp_path: Path) -> None:
    config = PoolConfig(strategy="processpool", workers=1)
    async with open_harness(tmp_path, limits=SandboxLimits(cpu_ms_per_event=30_000), pool_config=config) as h:
        await h.run("config", options={"error_channel": h.error_channel})
        await h.upload_script("slow", SLOW_ON_HELLO)
        [worker] = [p for p in multiprocessing.active_children() if p.name.startswith("warden-vm-")]
        await h.send_message("hello")
        async with asyncio.timeout(10):
            # The script's first write says its event is running in the worker (nothing to await).
            while not await h.storage.kv_get(h.guild_id, "started"):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)  # what the OOM killer or an operator's mistake would do
        report = await h.fake.wait_for_call("POST", MESSAGES, channel_id=h.error_channel.id)
        [embed] = report.payload["embeds"]
        assert "the message event was not run" in embed["description"]
        assert "SIGKILL" in embed["description"]
        mark = h.fake.mark()
        await h.send_message("anything else")
        reply = await h.fake.wait_for_call("POST", MESSAGES, since=mark, channel_id=h.general.id)
        assert reply.payload["content"] == "still here"
