"""``/script upload``, ``edit``, ``show``, ``history`` and ``rollback`` through the Discord stand-in.

The real bot, storage and VM pool: each test asserts on what the admin was answered (content, the
ephemeral flag, files) and on what the database holds afterwards.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.storage import ScriptRecord
from lua_runtime.limits import SandboxLimits
from tests.fakediscord import CallbackType
from tests.support.harness import WardenHarness, open_harness, warden

__all__ = ["warden"]  # the fixture, used by name below

pytestmark = pytest.mark.slow  # each test runs the bot against the Discord stand-in

GREETER = 'return {\n  message = function(msg)\n    print("saw " .. msg.content)\n  end,\n}\n'
JOINER = "return { member_join = function(ev) end, message = function(msg) end }\n"
BROKEN = "local limit = 3\nlocal words = = {}\nreturn {}\n"
REPLIER = (
    'local discord = require("@warden/discord")\n'
    'return { message = function(msg) discord.reply(msg, "v1 heard " .. msg.content) end }\n'
)


async def script(h: WardenHarness, name: str) -> ScriptRecord | None:
    return await h.storage.get_script(h.guild_id, name)


# --- upload -----------------------------------------------------------------------------------------


async def test_upload_creates_the_script_with_its_events_and_grants(warden: WardenHarness) -> None:
    h = warden
    file = h.attachment("Anti-Spam.luau", JOINER)
    answer = await h.run("upload", options={"grant": "delete, timeout"}, attachments=[file])

    assert answer.callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE
    assert answer.interaction.callback.ephemeral
    assert answer.ephemeral
    assert "Created **anti-spam** version 1" in answer.content
    assert "`member_join`, `message`" in answer.content
    record = await script(h, "anti-spam")
    assert record is not None
    assert record.source == JOINER
    assert record.enabled and record.version == 1
    assert record.events == ("member_join", "message")
    assert record.capabilities == ("delete", "timeout")
    assert record.author_id == h.admin.id


async def test_upload_of_a_new_version_keeps_grants_and_adds_new_ones(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("greeter", GREETER, grant="delete")
    answer = await h.upload_script("greeter", JOINER)
    assert "Saved **greeter** version 2" in answer.content
    record = await script(h, "greeter")
    assert record.version == 2 and record.capabilities == ("delete",)

    await h.upload_script("greeter", GREETER, grant="kick")
    record = await script(h, "greeter")
    assert record.version == 3 and record.capabilities == ("delete", "kick")


async def test_broken_upload_is_refused_with_line_and_source_and_the_old_version_keeps_running(
    warden: WardenHarness,
) -> None:
    h = warden
    await h.upload_script("replier", REPLIER)
    answer = await h.run(
        "upload", options={"name": "replier"}, attachments=[h.attachment("replier.lua", BROKEN)]
    )

    assert answer.ephemeral
    assert "the version already running keeps running" in answer.content
    assert "**Syntax error** on line 2" in answer.content
    assert "> 2 | local words = = {}" in answer.content
    record = await script(h, "replier")
    assert record.version == 1 and record.source == REPLIER
    # The guild's VM still runs version 1: a member's message gets its reply.
    mark = h.fake.mark()
    await h.send_message("hello")
    call = await h.fake.wait_for_call(
        "POST", "/channels/{channel_id}/messages", since=mark, channel_id=h.general.id
    )
    assert call.payload["content"] == "v1 heard hello"


async def test_top_level_runtime_error_is_refused_with_its_line(warden: WardenHarness) -> None:
    h = warden
    source = "local n = 1\nerror('configuration missing')\nreturn {}\n"
    answer = await h.run("upload", attachments=[h.attachment("setup.luau", source)])
    assert "nothing was saved" in answer.content
    assert "**Runtime error** on line 2: configuration missing" in answer.content
    assert "> 2 | error('configuration missing')" in answer.content
    assert await script(h, "setup") is None


async def test_upload_refuses_files_that_are_not_scripts(warden: WardenHarness) -> None:
    h = warden
    wrong_type = await h.run("upload", attachments=[h.attachment("notes.txt", GREETER)])
    assert wrong_type.ephemeral
    assert "upload a `.lua` or `.luau` file" in wrong_type.content

    latin1 = h.attachment("latin.lua", b"-- ok\n-- caf\xe9\nreturn {}\n")
    not_utf8 = await h.run("upload", attachments=[latin1])
    assert "not UTF-8 text (a byte on line 2 is invalid)" in not_utf8.content

    bad_name = await h.run("upload", attachments=[h.attachment("my script!.lua", GREETER)])
    assert "a-z, 0-9, '_' and '-'" in bad_name.content
    assert "Pick one with the `name` option" in bad_name.content

    bad_grant = await h.run(
        "upload", options={"grant": "delete, nuke"}, attachments=[h.attachment("ok.lua", GREETER)]
    )
    assert "Unknown capability `nuke`" in bad_grant.content
    assert "`roles` (add and remove roles)" in bad_grant.content

    assert await h.storage.list_scripts(h.guild_id) == []


async def test_upload_whose_file_cannot_be_downloaded_is_refused(warden: WardenHarness) -> None:
    h = warden
    h.fake.fail_next("GET", "/attachments/{attachment_id}/{filename}", status=404)
    answer = await h.run("upload", attachments=[h.attachment("gone.luau", JOINER)])
    assert answer.ephemeral
    assert answer.content == "Discord did not hand over `gone.luau`; upload it again."
    assert await script(h, "gone") is None


async def test_upload_enforces_the_size_and_count_quotas(tmp_path: Path) -> None:
    limits = SandboxLimits(max_script_bytes=200, max_scripts_per_guild=2)
    async with open_harness(tmp_path, limits=limits) as h:
        big = "-- " + "x" * 300 + "\nreturn {}\n"
        too_big = await h.run("upload", attachments=[h.attachment("big.lua", big)])
        assert too_big.ephemeral
        assert "`big.lua` is 314 bytes; the limit is 200 bytes" in too_big.content

        await h.upload_script("one", JOINER)
        await h.upload_script("two", JOINER)
        third = await h.run("upload", attachments=[h.attachment("three.lua", JOINER)])
        assert "already has 2 scripts and the limit is 2" in third.content
        assert [r.name for r in await h.storage.list_scripts(h.guild_id)] == ["one", "two"]
        # Replacing an existing script is not a new script: the count quota does not apply.
        await h.upload_script("two", GREETER)


# --- edit -------------------------------------------------------------------------------------------


def text_input(modal: dict, custom_id: str) -> dict:
    for component in modal["components"]:
        inner = component.get("component") or next(iter(component.get("components", [])), {})
        if inner.get("custom_id") == custom_id:
            return inner
    raise AssertionError(f"no text input {custom_id!r} in {modal}")


async def test_edit_opens_a_prefilled_modal_and_saves_the_submission(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("greeter", GREETER, grant="delete")
    opened = await h.run("edit", options={"name": "greeter"})

    assert opened.callback_type == CallbackType.MODAL
    field = text_input(opened.interaction.callback.modal, "source")
    assert field["value"] == GREETER
    assert field["style"] == 2 and field["max_length"] == 4000

    saved = await h.submit_modal(opened, {"source": JOINER})
    assert saved.ephemeral
    assert "Saved **greeter** version 2" in saved.content
    record = await script(h, "greeter")
    assert record.source == JOINER and record.capabilities == ("delete",)


async def test_broken_edit_is_refused_and_nothing_changes(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("greeter", GREETER)
    opened = await h.run("edit", options={"name": "greeter"})
    refused = await h.submit_modal(opened, {"source": BROKEN})
    assert refused.ephemeral
    assert "**Syntax error** on line 2" in refused.content
    assert (await script(h, "greeter")).version == 1


async def test_edit_sends_long_scripts_and_unknown_names_away(warden: WardenHarness) -> None:
    h = warden
    long_source = "-- padding\n" * 400 + "return {}\n"
    await h.upload_script("long", long_source)
    too_long = await h.run("edit", options={"name": "long"})
    assert too_long.callback_type == CallbackType.CHANNEL_MESSAGE and too_long.ephemeral
    assert "use `/script upload` instead" in too_long.content

    unknown = await h.run("edit", options={"name": "ghost"})
    assert unknown.ephemeral
    assert "this server has no script named 'ghost'" in unknown.content


# --- show, history, rollback ------------------------------------------------------------------------


async def test_show_gives_short_sources_inline_and_long_ones_as_a_file(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("greeter", GREETER)
    short = await h.run("show", options={"name": "greeter"})
    assert short.ephemeral
    assert short.content.startswith("**greeter** version 1 (enabled, current version 1)")
    assert f"```lua\n{GREETER}\n```" in short.content

    long_source = "-- padding line\n" * 200 + "return {}\n"
    await h.upload_script("long", long_source)
    long = await h.run("show", options={"name": "long"})
    assert long.ephemeral
    assert long.files == {"long.luau": long_source.encode()}


async def test_history_and_rollback(warden: WardenHarness) -> None:
    h = warden
    await h.upload_script("greeter", GREETER)
    await h.upload_script("greeter", JOINER)

    rolled = await h.run("rollback", options={"name": "greeter", "version": 1})
    assert rolled.ephemeral
    assert "Restored version 1 of **greeter** as version 3" in rolled.content
    record = await script(h, "greeter")
    assert record.version == 3 and record.source == GREETER and record.events == ("message",)

    history = await h.run("history", options={"name": "greeter"})
    assert history.ephemeral
    lines = history.content.splitlines()
    assert lines[1].startswith("v3 (current)") and lines[2].startswith("v2:") and lines[3].startswith("v1:")
    assert f"by <@{h.admin.id}>" in lines[1]

    old = await h.run("show", options={"name": "greeter", "version": 2})
    assert "version 2 (enabled, current version 3)" in old.content and JOINER in old.content

    missing = await h.run("rollback", options={"name": "greeter", "version": 9})
    assert "**greeter** has versions 1, 2, 3; there is no version 9" in missing.content
    assert (await script(h, "greeter")).version == 3


async def test_rollback_refuses_a_version_that_no_longer_loads(tmp_path: Path) -> None:
    async with open_harness(tmp_path) as h:
        commented = "-- " + "why " * 100 + "\n" + GREETER
        await h.upload_script("greeter", commented)
        await h.upload_script("greeter", GREETER)
        # The operator lowers the size limit and restarts: version 1 is over it now.
        h.settings = dataclasses.replace(h.settings, limits=SandboxLimits(max_script_bytes=300))
        await h.restart()
        refused = await h.run("rollback", options={"name": "greeter", "version": 1})
        assert "Version 1 of **greeter** no longer loads, so it was not restored" in refused.content
        size = len(commented.encode())
        assert f"**Limit reached**: the script is {size} bytes; the limit is 300" in refused.content
        assert (await script(h, "greeter")).version == 2
