"""``/script`` across the whole bot: an upload that moderates, a restart on the same database, Discord's
3-second window under a slow write, and failures that must become answers instead of silence."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from lua_runtime.pool import EventDropped
from tests.fakediscord import CallbackType
from tests.support.harness import WardenHarness, open_harness, warden

__all__ = ["warden"]  # the fixture, used by name below

pytestmark = pytest.mark.slow  # each test runs the bot against the Discord stand-in

BANNED_WORDS = (
    'local discord = require("@warden/discord")\n'
    'local BANNED: {string} = {"badword", "scamlink.example"}\n'
    "return {\n"
    "  message = function(msg)\n"
    "    local text = msg.content:lower()\n"
    "    for _, word in BANNED do\n"
    "      if string.find(text, word, 1, true) then\n"
    "        discord.delete_message(msg.channel_id, msg.id)\n"
    "        return\n"
    "      end\n"
    "    end\n"
    "  end,\n"
    "}\n"
)
DELETE_ROUTE = "/channels/{channel_id}/messages/{message_id}"
#: How long a test waits for something that should happen at once (not a timing assertion).
PROMPT = 5.0


async def test_an_uploaded_script_deletes_a_banned_word(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("banned-words", BANNED_WORDS, grant="delete")
    fine = await h.send_message("hello there")
    bad = await h.send_message("buy at SCAMLINK.example now")
    call = await h.fake.wait_for_call("DELETE", DELETE_ROUTE, channel_id=h.general.id)
    assert call.path_params["message_id"] == str(bad.id)
    assert bad.deleted and not fine.deleted


async def test_scripts_grants_and_settings_survive_a_restart(tmp_path: Path) -> None:
    async with open_harness(tmp_path) as h:
        await h.upload_script("banned-words", BANNED_WORDS, grant="delete")
        await h.upload_script("quiet", "return { member_join = function() end }\n")
        await h.run("disable", options={"name": "quiet"})
        await h.run("config", options={"error_channel": h.error_channel, "mention_policy": "users"})

        await h.restart()

        listed = await h.run("list")
        assert "**banned-words**: enabled, v1, handles `message`" in listed.content
        assert "**quiet**: disabled, v1, handles `member_join`" in listed.content
        config = await h.run("config")
        assert f"Error channel: <#{h.error_channel.id}>" in config.content
        assert "Mentions: `users`" in config.content
        # The new bot rebuilt its indexes from the database: the script runs with its grant.
        bad = await h.send_message("badword")
        await h.fake.wait_for_call("DELETE", DELETE_ROUTE, message_id=bad.id)


async def test_a_slow_write_is_answered_within_discords_window(
    warden: WardenHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = warden
    released = asyncio.Event()
    save_script = h.storage.save_script

    async def slow_save(*args: object, **kwargs: object) -> object:
        await released.wait()
        return await save_script(*args, **kwargs)

    monkeypatch.setattr(h.storage, "save_script", slow_save)
    interaction = await h.slash("upload", attachments=[h.attachment("slow.luau", BANNED_WORDS)])
    callback = await interaction.wait_response(PROMPT)
    assert callback.type == CallbackType.DEFERRED_CHANNEL_MESSAGE and callback.ephemeral
    # Ten seconds pass in Discord's eyes before the write finishes: far past the 3-second window,
    # well within the 15 minutes a followup may take. The harness fails the test on any late answer.
    h.fake.clock.advance(10.0)
    released.set()
    answer = await h.answer(interaction)
    assert answer.ephemeral and "Created **slow** version 1" in answer.content


async def test_an_unexpected_error_is_logged_and_answered(
    warden: WardenHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    h = warden

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    # Before any answer was sent...
    monkeypatch.setattr(h.storage, "list_scripts", broken)
    with caplog.at_level(logging.ERROR, logger="cogs.script_views"):
        answer = await h.run("list")
    assert answer.callback_type == CallbackType.CHANNEL_MESSAGE and answer.ephemeral
    assert (
        answer.content == "Something went wrong inside Warden. The error was logged for the bot's operator."
    )
    (record,) = [r for r in caplog.records if r.name == "cogs.script_views"]
    assert "disk on fire" in str(record.exc_info[1])

    # ...and after deferring: the followup carries the same answer.
    monkeypatch.setattr(h.bot, "scripts_changed", broken)
    deferred = await h.run("upload", attachments=[h.attachment("late.luau", BANNED_WORDS)])
    assert deferred.callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE and deferred.ephemeral
    assert deferred.content.startswith("Something went wrong inside Warden.")


async def test_pool_refusals_are_answered_as_they_are(
    warden: WardenHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = warden
    await h.upload_script("banned-words", BANNED_WORDS)

    async def spent(*args: object, **kwargs: object) -> None:
        raise EventDropped(h.guild_id, "cpu_budget", "skipped: this server's scripts used up their CPU time")

    monkeypatch.setattr(h.bot.pool, "dry_run", spent)
    answer = await h.run("test", options={"name": "banned-words"})
    assert answer.ephemeral
    assert answer.content == "skipped: this server's scripts used up their CPU time"
