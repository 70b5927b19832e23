"""``/script list``, ``enable``, ``disable``, ``delete``, ``grant``, ``revoke``, autocomplete, and who may
use any of them, through the Discord stand-in with the real bot, storage and VM pool."""

from __future__ import annotations

import pytest

from tests.fakediscord import CallbackType, Permission
from tests.support.harness import WardenHarness, warden

__all__ = ["warden"]  # the fixture, used by name below

pytestmark = pytest.mark.slow  # each test runs the bot against the Discord stand-in

REPLIER = (
    'local discord = require("@warden/discord")\n'
    'return { message = function(msg) discord.reply(msg, "heard " .. msg.content) end }\n'
)
FAILING = "return {\n  message = function(msg)\n    local n = nil\n    return n + 1\n  end,\n}\n"
QUIET = "return { member_join = function(ev) end }\n"


# --- who may use /script ---------------------------------------------------------------------------


async def test_the_group_is_guild_only_and_defaults_to_manage_server(warden: WardenHarness) -> None:
    (command,) = [c for c in warden.fake.commands(warden.guild) if c["name"] == "script"]
    assert int(command["default_member_permissions"]) == Permission.MANAGE_GUILD
    assert command["contexts"] == [0] and command["dm_permission"] is False
    subcommands = {option["name"] for option in command["options"]}
    assert {"upload", "edit", "list", "show", "enable", "disable", "delete", "test", "logs"} <= subcommands
    assert {"history", "rollback", "grant", "revoke", "config", "stats", "kv"} <= subcommands


async def test_a_member_without_manage_server_is_refused(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("replier", REPLIER)
    file = h.attachment("evil.lua", QUIET)
    upload = await h.run("upload", member=h.member, attachments=[file])
    assert upload.callback_type == CallbackType.CHANNEL_MESSAGE
    assert upload.ephemeral
    assert upload.content == "You need the **Manage Server** permission to manage Warden scripts."
    disable = await h.run("disable", member=h.member, options={"name": "replier"})
    assert "Manage Server" in disable.content
    kv = await h.run("kv list", member=h.member)
    assert "Manage Server" in kv.content

    assert [r.name for r in await h.storage.list_scripts(h.guild_id)] == ["replier"]
    assert (await h.storage.get_script(h.guild_id, "replier")).enabled
    assert await h.autocomplete("show", "name", member=h.member) == []


async def test_the_owner_may_use_it(warden: WardenHarness) -> None:
    answer = await warden.run("list", member=warden.owner)
    assert answer.ephemeral
    assert answer.content == "This server has no scripts yet. Add one with `/script upload`."


# --- list and autocomplete -------------------------------------------------------------------------


async def test_list_shows_state_events_version_and_last_error(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("replier", REPLIER)
    await h.upload_script("replier", REPLIER.replace("heard", "got"))
    await h.upload_script("failing", FAILING)
    await h.upload_script("quiet", QUIET)
    await h.run("disable", options={"name": "quiet"})
    await h.send_message("hello")
    await h.wait_for_run_log(script="failing")

    answer = await h.run("list")
    assert answer.ephemeral
    lines = answer.content.splitlines()
    assert lines[0] == "**Scripts** (3 of 25)"
    assert lines[1] == "**failing**: enabled, v1, handles `message`"
    assert lines[2].startswith("  last error <t:") and "attempt to perform arithmetic" in lines[2]
    assert lines[3] == "**quiet**: disabled, v1, handles `member_join`"
    assert lines[4] == "**replier**: enabled, v2, handles `message`"


async def test_autocomplete_offers_matching_script_names_and_capabilities(warden: WardenHarness) -> None:
    h = warden
    for name in ("anti-spam", "anti-raid", "welcome"):
        await h.upload_script(name, QUIET)
    choices = await h.autocomplete("show", "name", options={"name": "anti"})
    assert [c["value"] for c in choices] == ["anti-raid", "anti-spam"]
    everything = await h.autocomplete("delete", "name", options={"name": ""})
    assert [c["value"] for c in everything] == ["anti-raid", "anti-spam", "welcome"]

    capabilities = await h.autocomplete(
        "grant", "capabilities", options={"name": "welcome", "capabilities": "delete, t"}
    )
    assert [c["value"] for c in capabilities] == ["delete, timeout"]
    assert capabilities[0]["name"] == "delete, timeout (time members out)"


# --- enable, disable, delete -----------------------------------------------------------------------


async def test_disable_stops_the_script_and_enable_starts_it_again(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("replier", REPLIER)
    disabled = await h.run("disable", options={"name": "replier"})
    assert disabled.callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE and disabled.ephemeral
    assert disabled.content == "**replier** is disabled. It no longer runs."
    assert not (await h.storage.get_script(h.guild_id, "replier")).enabled
    again = await h.run("disable", options={"name": "replier"})
    assert again.content == "**replier** is disabled (it already was). It no longer runs."

    # A disabled script gets no events; once enabled, the next message reaches it.
    mark = h.fake.mark()
    await h.send_message("ignored")
    enabled = await h.run("enable", options={"name": "replier"})
    assert enabled.content == "**replier** is enabled. It handles `message`."
    await h.send_message("welcome back")
    call = await h.fake.wait_for_call("POST", "/channels/{channel_id}/messages", since=mark)
    assert call.payload["content"] == "heard welcome back"

    missing = await h.run("enable", options={"name": "ghost"})
    assert missing.ephemeral
    assert missing.content == "this server has no script named 'ghost'"


async def test_delete_asks_first_and_deletes_on_confirmation(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("replier", REPLIER)
    await h.upload_script("replier", REPLIER)
    question = await h.run("delete", options={"name": "replier"})
    assert question.callback_type == CallbackType.CHANNEL_MESSAGE and question.ephemeral
    assert question.content == "Delete **replier** and all 2 of its versions? This cannot be undone."
    assert await h.storage.get_script(h.guild_id, "replier") is not None

    done = await h.click(question, "Delete")
    assert done.callback_type == CallbackType.DEFERRED_UPDATE_MESSAGE
    assert done.content == "Deleted **replier** and its 2 version(s)."
    assert done.message.components == []
    assert await h.storage.get_script(h.guild_id, "replier") is None
    # The guild's VM no longer has it: a message gets no reply.
    mark = h.fake.mark()
    await h.send_message("anyone?")
    await h.run("list")
    assert h.fake.calls("POST", "/channels/{channel_id}/messages")[mark:] == []


async def test_delete_can_be_cancelled_and_only_by_the_admin_who_asked(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("replier", REPLIER)
    question = await h.run("delete", options={"name": "replier"})

    intruder = await h.click(question, "Delete", member=h.owner)
    assert intruder.ephemeral
    assert intruder.content == "Only the admin who asked can answer this."
    assert await h.storage.get_script(h.guild_id, "replier") is not None

    kept = await h.click(question, "Cancel")
    assert kept.callback_type == CallbackType.UPDATE_MESSAGE
    assert kept.content == "Kept **replier**."
    assert await h.storage.get_script(h.guild_id, "replier") is not None

    missing = await h.run("delete", options={"name": "ghost"})
    assert missing.content == "this server has no script named 'ghost'"


# --- grants ----------------------------------------------------------------------------------------


async def test_grant_and_revoke_change_what_the_script_may_do(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("replier", REPLIER)
    granted = await h.run("grant", options={"name": "replier", "capabilities": "kick, delete"})
    assert granted.ephemeral
    assert granted.content == ("**replier** is granted: `delete` (delete messages), `kick` (kick members).")
    assert (await h.storage.get_script(h.guild_id, "replier")).capabilities == ("delete", "kick")

    revoked = await h.run("revoke", options={"name": "replier", "capabilities": "kick"})
    assert revoked.content == "**replier** is granted: `delete` (delete messages)."
    await h.run("revoke", options={"name": "replier", "capabilities": "delete"})
    assert (await h.storage.get_script(h.guild_id, "replier")).capabilities == ()

    unknown = await h.run("grant", options={"name": "replier", "capabilities": "admin"})
    assert unknown.callback_type == CallbackType.CHANNEL_MESSAGE and unknown.ephemeral
    assert unknown.content.startswith("Unknown capability `admin`. Capabilities are: `delete`")
    missing = await h.run("grant", options={"name": "ghost", "capabilities": "ban"})
    assert missing.content == "this server has no script named 'ghost'"
