"""Actions out, through the local Discord stand-in: the exact REST call of each action, and each refusal.

One script, granted everything, turns chat commands into actions (``!kick <id>``...); the admin types
them, so every call below is checked for its route, body, pings and audit-log reason. Refusals are
checked the other way round: no call reaches Discord, and the guild is told why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.harness import WardenHarness, open_harness

pytestmark = pytest.mark.slow

ACTOR = """local discord = require("@warden/discord")
return {
  message = function(msg)
    local verb, a, b = string.match(msg.content, "^!(%S+)%s*(%S*)%s*(%S*)")
    if verb == "reply" then discord.reply(msg, `hi <@{msg.author.id}> @everyone`)
    elseif verb == "send" then
      discord.send(msg.channel_id, { content = "report", embeds = { { title = "T", description = "D", color = 255 } } })
    elseif verb == "sendto" then discord.send(a, "elsewhere")
    elseif verb == "fleeting" then
      discord.reply(msg, { content = "gone in a second", delete_after = 1 })
      discord.send(msg.channel_id, { content = "me too", delete_after = 1.5 })
    elseif verb == "delete" then discord.delete_message(msg.channel_id, msg.id)
    elseif verb == "react" then discord.react(msg.channel_id, msg.id, "👍")
    elseif verb == "timeout" then discord.timeout(a, 60, "calm down")
    elseif verb == "kick" then discord.kick(a, "bye")
    elseif verb == "ban" then discord.ban(a, "gone", 3600)
    elseif verb == "addrole" then discord.add_role(a, b, "promote")
    elseif verb == "removerole" then discord.remove_role(a, b, "demote")
    elseif verb == "log" then discord.log("noted: " .. a)
    end
  end,
}
"""
ALL = "delete, timeout, kick, ban, roles"

MESSAGES = "/channels/{channel_id}/messages"
MESSAGE = "/channels/{channel_id}/messages/{message_id}"
MEMBER = "/guilds/{guild_id}/members/{user_id}"
MEMBER_ROLE = "/guilds/{guild_id}/members/{user_id}/roles/{role_id}"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[WardenHarness]:
    async with open_harness(tmp_path, start=False) as harness:
        guild = harness.guild
        harness.low_role = harness.fake.add_role(guild, "Regular")  # just below Warden's role
        harness.high_role = harness.fake.add_role(guild, "Staff", position=guild.bot_role.position + 1)
        harness.staff = harness.fake.add_member(guild, "staff", roles=[harness.high_role])
        harness.other_bot = harness.fake.add_member(guild, "otherbot", bot=True)
        await harness.start_bot()
        await harness.upload_script("actor", ACTOR, grant=ALL)
        yield harness


async def command(h: WardenHarness, text: str, route: str, method: str = "POST", **params) -> object:
    mark = h.fake.mark()
    message = await h.send_message(text, author=h.admin)
    call = await h.fake.wait_for_call(method, route, since=mark, **params)
    return message, call


async def test_reply_quotes_the_message_and_pings_nobody(h: WardenHarness) -> None:
    message, call = await command(h, "!reply", MESSAGES, channel_id=h.general.id)
    assert call.payload["content"] == f"hi <@{h.admin.id}> @everyone"
    assert int(call.payload["message_reference"]["message_id"]) == message.id
    assert call.payload["allowed_mentions"]["parse"] == []
    sent = h.fake.message(int(call.response["id"]))
    assert sent.mention_user_ids == [] and not sent.mention_everyone  # nobody was notified


async def test_user_pings_follow_the_guild_policy(h: WardenHarness) -> None:
    await h.run("config", options={"mention_policy": "users"})
    _, call = await command(h, "!reply", MESSAGES, channel_id=h.general.id)
    assert call.payload["allowed_mentions"]["parse"] == ["users"]
    assert "everyone" not in call.payload["allowed_mentions"]["parse"]


async def test_send_with_an_embed(h: WardenHarness) -> None:
    _, call = await command(h, "!send", MESSAGES, channel_id=h.general.id)
    assert call.payload["content"] == "report"
    [embed] = call.payload["embeds"]
    assert (embed["title"], embed["description"], embed["color"]) == ("T", "D", 255)


async def test_delete_after_deletes_the_sent_messages_once_their_time_has_passed(h: WardenHarness) -> None:
    mark = h.fake.mark()
    await h.send_message("!fleeting", author=h.admin)
    reply, sent = [
        await h.fake.wait_for_call("POST", MESSAGES, since=mark, channel_id=h.general.id, count=n)
        for n in (1, 2)
    ]
    assert (reply.payload["content"], sent.payload["content"]) == ("gone in a second", "me too")
    assert "delete_after" not in reply.payload  # discord.py keeps it: Discord never hears of it
    for call in (reply, sent):
        message_id = call.response["id"]
        deletion = await h.fake.wait_for_call(
            "DELETE", MESSAGE, since=mark, message_id=message_id, timeout=15
        )
        assert deletion.index > call.index
        assert deletion.reason is None  # discord.py deletes its own message without an audit reason
        assert h.fake.message(int(message_id)).deleted


async def test_delete_and_react(h: WardenHarness) -> None:
    message, call = await command(h, "!delete", MESSAGE, "DELETE", channel_id=h.general.id)
    assert message.deleted
    assert call.reason == "Warden script actor: no reason given"
    message, call = await command(
        h, "!react", MESSAGE + "/reactions/{emoji}/@me", "PUT", channel_id=h.general.id
    )
    assert call.path_params["message_id"] == str(message.id)


async def test_member_actions_carry_the_audit_reason(h: WardenHarness) -> None:
    target, guild_id = h.member.id, h.guild_id
    _, call = await command(h, f"!timeout {target}", MEMBER, "PATCH", guild_id=guild_id, user_id=target)
    assert call.payload["communication_disabled_until"] is not None
    assert call.reason == "Warden script actor: calm down"
    _, call = await command(
        h, f"!addrole {target} {h.low_role.id}", MEMBER_ROLE, "PUT", role_id=h.low_role.id
    )
    assert call.reason == "Warden script actor: promote"
    _, call = await command(
        h, f"!removerole {target} {h.low_role.id}", MEMBER_ROLE, "DELETE", role_id=h.low_role.id
    )
    assert call.reason == "Warden script actor: demote"
    _, call = await command(h, f"!kick {target}", MEMBER, "DELETE", guild_id=guild_id, user_id=target)
    assert call.reason == "Warden script actor: bye"


async def test_ban_deletes_recent_messages(h: WardenHarness) -> None:
    target = h.member.id
    _, call = await command(h, f"!ban {target}", "/guilds/{guild_id}/bans/{user_id}", "PUT", user_id=target)
    assert call.query == {"delete_message_seconds": "3600"}
    assert call.reason == "Warden script actor: gone"


async def test_log_goes_to_the_log_channel_without_pings(h: WardenHarness) -> None:
    await h.run("config", options={"log_channel": h.log_channel})
    _, call = await command(h, "!log @everyone", MESSAGES, channel_id=h.log_channel.id)
    assert call.payload["content"] == "[actor] noted: @everyone"
    assert call.payload["allowed_mentions"]["parse"] == []


async def refused(h: WardenHarness, text: str, script: str = "actor") -> str:
    """Send ``text``; the guild's run log must say why nothing happened, and nothing may reach Discord."""
    before = len(await h.storage.recent_run_log(h.guild_id, script))
    mark = h.fake.mark()
    await h.send_message(text, author=h.admin)
    entries = await h.wait_for_run_log(before + 1, script=script)
    sent = [call for call in h.fake.calls() if call.index >= mark and call.method != "GET"]
    assert sent == [], [f"{c.method} {c.path}" for c in sent]
    return entries[0].message


async def test_a_missing_capability_is_refused(h: WardenHarness) -> None:
    await h.upload_script("polite", ACTOR.replace("!(%S+)", "^%?(%S+)").replace("^^", "^"))
    message = await refused(h, f"?kick {h.member.id}", script="polite")
    assert message == (
        "Action failed: kick needs the 'kick' capability, which script polite was not granted "
        "(an admin can grant it with /script grant)"
    )


async def test_targets_outside_the_guild_are_refused(h: WardenHarness) -> None:
    message = await refused(h, "!sendto 1100000000000000999")
    assert message == "Action failed: channel 1100000000000000999 is not a text channel of this server"
    message = await refused(h, "!timeout 1100000000000000998")
    assert message == "Action failed: user 1100000000000000998 is not a member of this server"


async def test_the_hierarchy_is_checked_before_discord_is_asked(h: WardenHarness) -> None:
    message = await refused(h, f"!kick {h.owner.id}")
    assert message == "Action failed: cannot kick the server owner"
    message = await refused(h, f"!timeout {h.staff.id}")
    assert message.startswith("Action failed: cannot time out staff")
    message = await refused(h, f"!addrole {h.member.id} {h.high_role.id}")
    assert (
        message
        == "Action failed: role Staff is at or above Warden's highest role (move Warden's role higher)"
    )


async def test_other_bots_are_ignored_unless_the_guild_allows_them(h: WardenHarness) -> None:
    mark = h.fake.mark()
    await h.send_message("!send", author=h.other_bot)
    await h.send_message("!react", author=h.admin)  # a later event that is handled: the bot's was skipped
    await h.fake.wait_for_call("PUT", MESSAGE + "/reactions/{emoji}/@me", since=mark)
    assert not [
        call for call in h.fake.calls("POST", MESSAGES, channel_id=h.general.id) if call.index >= mark
    ]
    await h.run("config", options={"allow_bot_authors": True})
    mark = h.fake.mark()
    await h.send_message("!send", author=h.other_bot)
    await h.fake.wait_for_call("POST", MESSAGES, since=mark, channel_id=h.general.id)


async def test_an_action_discord_py_refuses_to_build_is_reported_and_the_next_one_runs(
    h: WardenHarness,
) -> None:
    # An action the builders would refuse, handed to the executor directly: discord.py raises while
    # building the request. That action fails with the reason; the ones after it still run.
    guild = h.bot.get_guild(h.guild_id)
    assert guild is not None
    channel_id = str(h.general.id)
    too_many = {"type": "send", "script": "actor", "channel_id": channel_id, "embeds": [{"title": "x"}] * 11}
    fine = {"type": "send", "script": "actor", "channel_id": channel_id, "content": "after"}
    settings = await h.bot.guild_settings(h.guild_id)
    mark = h.fake.mark()
    outcomes = await h.bot.executor.execute(guild, [too_many, fine], {"actor": frozenset()}, settings)
    assert [outcome.ok for outcome in outcomes] == [False, True]
    assert outcomes[0].problem is not None and "embeds" in outcomes[0].problem
    sent = await h.fake.wait_for_call("POST", MESSAGES, since=mark, channel_id=h.general.id)
    assert sent.payload["content"] == "after"
