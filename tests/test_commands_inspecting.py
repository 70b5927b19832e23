"""``/script test``, ``logs``, ``stats``, ``config`` and ``kv`` through the Discord stand-in, with the
real bot, storage and VM pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakediscord import CallbackType, Permission, PermissionOverwrite
from tests.support.harness import WardenHarness, open_harness, warden

__all__ = ["warden"]  # the fixture, used by name below

pytestmark = pytest.mark.slow  # each test runs the bot against the Discord stand-in

MODERATOR = (
    'local discord = require("@warden/discord")\n'
    "return {\n"
    "  message = function(msg)\n"
    '    print("from " .. msg.author.id .. ": " .. msg.content)\n'
    '    if msg.content:find("badword", 1, true) then\n'
    "      discord.delete_message(msg.channel_id, msg.id)\n"
    '      discord.reply(msg, "Please keep it civil")\n'
    "    end\n"
    "  end,\n"
    "}\n"
)
FAILING = "return {\n  message = function(msg)\n    local n = nil\n    return n + 1\n  end,\n}\n"
PRINTER = 'return { message = function(msg) print("saw " .. msg.content) end }\n'
SPINNER = "return { message = function(msg) while true do end end }\n"


# --- test (dry run) --------------------------------------------------------------------------------


async def test_test_lists_the_actions_output_and_cost_and_executes_nothing(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("moderator", MODERATOR, grant="delete")
    mark = h.fake.mark()
    answer = await h.run("test", options={"name": "moderator", "content": "you badword", "author": h.member})
    assert answer.callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE and answer.ephemeral
    lines = answer.content.splitlines()
    assert lines[0] == "Test of **moderator** on `message` (nothing was executed)"
    assert lines[1] == "Actions it would request (2):"
    assert lines[2].startswith(f'1. `delete_message` channel_id="{h.general.id}", message_id="')
    assert "refused" not in lines[2]
    assert lines[3].startswith(f'2. `reply` channel_id="{h.general.id}"')
    assert '"Please keep it civil"' in lines[3]
    assert f"from {h.member.id}: you badword" in answer.content
    assert lines[-1].startswith("Used ") and " ms of CPU and " in lines[-1]
    # Nothing reached Discord but the answer itself.
    assert [
        c.route for c in h.fake.log.calls[mark:] if not c.route.startswith(("/interactions", "/webhooks"))
    ] == []


async def test_test_notes_missing_grants_and_shows_runtime_errors_with_their_line(
    warden: WardenHarness,
) -> None:
    h = warden
    await h.upload_script("moderator", MODERATOR)
    answer = await h.run("test", options={"name": "moderator", "content": "badword"})
    assert "(refused: needs the `delete` grant)" in answer.content

    await h.upload_script("failing", FAILING)
    failed = await h.run("test", options={"name": "failing"})
    assert "**Runtime error** on line 4: " in failed.content
    assert "> 4 |     return n + 1" in failed.content
    assert "Actions it would request: none." in failed.content


async def test_test_uses_the_chosen_event_and_refuses_content_for_other_events(warden: WardenHarness) -> None:
    h = warden
    joiner = 'return { member_join = function(ev) print("age " .. ev.member.account_age_days) end }\n'
    await h.upload_script("joiner", joiner)
    answer = await h.run("test", options={"name": "joiner", "event": "member_join"})
    assert "Test of **joiner** on `member_join`" in answer.content
    assert "age 0.5" in answer.content

    refused = await h.run("test", options={"name": "joiner", "event": "member_join", "content": "hi"})
    assert refused.callback_type == CallbackType.CHANNEL_MESSAGE and refused.ephemeral
    assert refused.content == "`content` applies to message events only, not `member_join`."
    missing = await h.run("test", options={"name": "ghost"})
    assert missing.content == "this server has no script named 'ghost'"


# --- logs and stats --------------------------------------------------------------------------------


async def test_logs_show_recent_errors_and_print_output(warden: WardenHarness) -> None:
    h = warden
    empty = await h.run("logs")
    assert empty.ephemeral and empty.content == "No errors or output from this server's scripts yet."

    await h.upload_script("failing", FAILING)
    await h.upload_script("printer", PRINTER)
    await h.send_message("hello")
    await h.wait_for_run_log(2)

    answer = await h.run("logs")
    assert answer.ephemeral
    assert answer.content.startswith("Recent errors and output of this server's scripts (UTC, newest last):")
    assert "failing error: " in answer.content and "attempt to perform arithmetic" in answer.content
    assert "printer print: saw hello" in answer.content

    only = await h.run("logs", options={"name": "printer"})
    assert "printer print: saw hello" in only.content and "failing" not in only.content
    missing = await h.run("logs", options={"name": "ghost"})
    assert missing.content == "this server has no script named 'ghost'"


async def test_logs_too_long_for_a_message_come_as_a_file(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("chatty", 'return { message = function(msg) print(string.rep("x", 1500)) end }\n')
    await h.send_message("one")
    await h.send_message("two")
    await h.wait_for_run_log(2)
    answer = await h.run("logs")
    assert answer.ephemeral
    assert answer.content == (
        "Recent errors and output of this server's scripts (UTC, newest last):\n"
        "(The full answer is attached as `logs.txt`.)"
    )
    assert list(answer.files) == ["logs.txt"]
    assert answer.text.count("chatty print: " + "x" * 1500) == 2


async def test_stats_count_events_errors_time_limit_hits_and_cpu_per_script(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("failing", FAILING)
    await h.upload_script("printer", PRINTER)
    await h.upload_script("spinner", SPINNER)
    await h.send_message("one")
    await h.send_message("two")
    await h.wait_for_run_log(6)

    answer = await h.run("stats")
    assert answer.callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE and answer.ephemeral
    assert "Events run: 2 (timer runs: 0); errors: 4; time-limit hits: 2;" in answer.content
    rows = {line.split()[0]: line.split()[1:] for line in answer.content.splitlines() if line[:1].islower()}
    assert rows["script"] == ["events", "errors", "time-limit", "CPU", "ms"]
    assert rows["failing"][:3] == ["2", "2", "0"]
    assert rows["printer"][:3] == ["2", "0", "0"]
    assert rows["spinner"][:3] == ["2", "2", "2"]
    assert float(rows["spinner"][3]) > 0


# --- config ----------------------------------------------------------------------------------------


async def test_config_shows_changes_and_clears_the_server_settings(warden: WardenHarness) -> None:
    h = warden
    shown = await h.run("config")
    assert shown.callback_type == CallbackType.CHANNEL_MESSAGE and shown.ephemeral
    assert shown.content.splitlines() == [
        "**Warden configuration**",
        "Error channel: not set (errors are kept in `/script logs`)",
        "Log channel: not set (`log` actions fail, reported)",
        "Mentions: `none`: scripts' messages ping nobody",
        "Messages from bots: are ignored",
    ]

    changed = await h.run(
        "config",
        options={
            "error_channel": h.error_channel,
            "log_channel": h.log_channel,
            "mention_policy": "users",
            "allow_bot_authors": True,
        },
    )
    assert changed.ephemeral
    assert f"Error channel: <#{h.error_channel.id}>" in changed.content
    assert "Mentions: `users`" in changed.content and "Messages from bots: reach scripts" in changed.content
    stored = await h.storage.get_guild_settings(h.guild_id)
    assert (stored.error_channel_id, stored.log_channel_id) == (h.error_channel.id, h.log_channel.id)
    assert stored.mention_policy == "users" and stored.allow_bot_authors
    assert await h.bot.guild_settings(h.guild_id) == stored

    cleared = await h.run("config", options={"clear": "error_channel"})
    assert "Error channel: not set" in cleared.content
    stored = await h.storage.get_guild_settings(h.guild_id)
    assert stored.error_channel_id is None and stored.log_channel_id == h.log_channel.id
    assert await h.bot.guild_settings(h.guild_id) == stored

    both = await h.run("config", options={"log_channel": h.general, "clear": "log_channel"})
    assert both.content == "Set `log_channel` or clear it, not both."
    assert (await h.storage.get_guild_settings(h.guild_id)).log_channel_id == h.log_channel.id


async def test_errors_go_to_the_configured_error_channel(warden: WardenHarness) -> None:
    h = warden
    await h.run("config", options={"error_channel": h.error_channel})
    await h.upload_script("failing", FAILING)
    await h.send_message("hello")
    call = await h.fake.wait_for_call(
        "POST", "/channels/{channel_id}/messages", channel_id=h.error_channel.id
    )
    assert call.payload["embeds"][0]["title"] == "Script failing"


async def test_config_warns_about_a_channel_warden_cannot_write_in(tmp_path: Path) -> None:
    async with open_harness(tmp_path, start=False) as h:
        deny = PermissionOverwrite(id=h.guild.bot_role_id, type=0, deny=Permission.SEND_MESSAGES)
        locked = h.fake.add_channel(h.guild, "locked", overwrites=[deny])
        await h.start_bot()
        answer = await h.run("config", options={"error_channel": locked})
        assert (
            f"Warden cannot send messages in <#{locked.id}>: give it Send Messages there." in answer.content
        )
        assert (await h.storage.get_guild_settings(h.guild_id)).error_channel_id == locked.id


# --- kv --------------------------------------------------------------------------------------------


async def test_kv_list_get_and_delete(warden: WardenHarness) -> None:
    h = warden
    store = h.storage.kv_store
    store.set(h.guild_id, "warnings:1", 2)
    store.set(h.guild_id, "warnings:2", 1)
    store.set(h.guild_id, "config", {"words": ["badword"], "limit": 3})

    listed = await h.run("kv list")
    assert listed.callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE and listed.ephemeral
    assert "```\nconfig\nwarnings:1\nwarnings:2\n```" in listed.content
    prefixed = await h.run("kv list", options={"prefix": "warnings:"})
    assert "```\nwarnings:1\nwarnings:2\n```" in prefixed.content

    value = await h.run("kv get", options={"key": "config"})
    assert value.ephemeral
    assert '"words": [\n    "badword"\n  ]' in value.content and '"limit": 3' in value.content

    deleted = await h.run("kv delete", options={"key": "warnings:1"})
    assert deleted.content == "Deleted `warnings:1`."
    assert store.get(h.guild_id, "warnings:1") is None
    again = await h.run("kv delete", options={"key": "warnings:1"})
    assert again.content == "There is no key `warnings:1`."
    absent = await h.run("kv get", options={"key": "nothing"})
    assert absent.content == "There is no key `nothing`."


async def test_kv_errors_are_answered_clearly(warden: WardenHarness) -> None:
    h = warden
    answer = await h.run("kv get", options={"key": "k" * 300})
    assert answer.ephemeral
    assert "256" in answer.content and "Something went wrong" not in answer.content
    empty = await h.run("kv list")
    assert empty.content == "No keys in this server's store."
