"""``delete_after`` on ``discord.reply``/``discord.send``: the builder's checks and the action it builds.

Through real guild VMs (the errors carry the author's line), through the offline CLI (a dry run shows
the field), and through ``discord.lua`` alone in a bare Lua 5.4 runtime, where the host's ceiling is
handed in as the kernel hands in its limits. The REST calls it leads to are in ``tests/test_actions.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lupa import lua54

from bot.cli import main
from lua_runtime.events import sample_payload
from lua_runtime.guild_vm import GuildVM, ScriptSource
from lua_runtime.limits import SandboxLimits

MESSAGE = sample_payload("message")
ROOT = Path(__file__).resolve().parent.parent
DISCORD_LUA = ROOT / "lua_runtime" / "lua" / "discord.lua"


def handle(body: str) -> GuildVM:
    """A VM running one script whose message handler is ``body``, starting on line 3."""
    source = f'local discord = require("@warden/discord")\nreturn {{ message = function(msg)\n{body}\nend }}'
    vm = GuildVM(7, [ScriptSource("cleaner", source)], SandboxLimits())
    assert vm.load_errors == []
    return vm


def test_reply_and_send_carry_delete_after_in_their_action() -> None:
    vm = handle(
        'discord.reply(msg, { content = "read this", delete_after = 10 })\n'
        'discord.send(msg.channel_id, { embeds = { { title = "T" } }, delete_after = 2.5 })\n'
        'discord.send(msg.channel_id, { content = "stays" })'
    )
    result = vm.dispatch("message", MESSAGE)
    assert result.ok, result.errors
    reply, embed, plain = result.actions
    assert reply == {
        "type": "reply",
        "channel_id": MESSAGE["channel_id"],
        "message_id": MESSAGE["id"],
        "content": "read this",
        "delete_after": 10,
        "script": "cleaner",
    }
    assert type(reply["delete_after"]) is int  # a whole number stays whole: a dry run shows 10, not 10.0
    assert (embed["delete_after"], embed["embeds"]) == (2.5, [{"title": "T"}])
    assert "delete_after" not in plain


def test_a_whole_float_is_kept_whole() -> None:
    [action] = (
        handle('discord.send(msg.channel_id, { content = "x", delete_after = 30.0 })')
        .dispatch("message", MESSAGE)
        .actions
    )
    assert action["delete_after"] == 30 and type(action["delete_after"]) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"10"', 'delete_after must be a number of seconds, got "10"'),
        ("true", "delete_after must be a number of seconds, got true"),
        ("{}", "delete_after must be a number of seconds, got a table"),
        ("0/0", "delete_after must be a number of seconds, got "),
        ("0", "delete_after must be between 1 and 900 seconds, got 0"),
        ("0.5", "delete_after must be between 1 and 900 seconds, got 0.5"),
        ("-10", "delete_after must be between 1 and 900 seconds, got -10"),
        ("901", "delete_after must be between 1 and 900 seconds, got 901"),
        ("math.huge", "delete_after must be between 1 and 900 seconds, got inf"),
    ],
)
def test_a_wrong_delete_after_is_an_error_at_the_authors_line(value: str, message: str) -> None:
    vm = handle(f'local x = 1\ndiscord.reply(msg, {{ content = "hi", delete_after = {value} }})')
    result = vm.dispatch("message", MESSAGE)
    assert result.actions == []  # nothing is recorded
    [error] = result.errors
    assert (error.kind, error.line) == ("runtime", 4)
    assert error.message.startswith(message)


def test_the_limits_are_inclusive() -> None:
    vm = handle(
        'discord.send(msg.channel_id, { content = "a", delete_after = 1 })\n'
        'discord.send(msg.channel_id, { content = "b", delete_after = 900 })'
    )
    assert [action["delete_after"] for action in vm.dispatch("message", MESSAGE).actions] == [1, 900]


def test_the_other_checks_of_a_message_still_come_first() -> None:
    vm = handle("discord.send(msg.channel_id, { delete_after = 10 })")
    [error] = vm.dispatch("message", MESSAGE).errors
    assert (error.message, error.line) == ("a message needs content or at least one embed", 3)


def test_a_dry_run_shows_delete_after_in_the_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "fleeting.luau"
    script.write_text(
        'local discord = require("@warden/discord")\n'
        'return { message = function(msg) discord.reply(msg, { content = "gone soon", delete_after = 10 }) end }',
        encoding="utf-8",
    )
    assert main(["script", "run", str(script)]) == 0
    shown = capsys.readouterr().out
    assert f'reply channel_id="{MESSAGE["channel_id"]}" content="gone soon" delete_after=10 ' in shown
    assert main(["script", "run", str(script), "--json"]) == 0
    [action] = json.loads(capsys.readouterr().out)["actions"]
    assert action["delete_after"] == 10


def test_the_guide_quotes_the_range_and_the_errors_as_the_builder_gives_them() -> None:
    guide = " ".join((ROOT / "docs" / "scripting.md").read_text(encoding="utf-8").split())
    ceiling = SandboxLimits().max_timer_delay_seconds
    assert f"`delete_after` is a number of seconds from 1 to {ceiling} " in guide
    for value in ('"10"', "0"):
        vm = handle(f'discord.reply(msg, {{ content = "hi", delete_after = {value} }})')
        [error] = vm.dispatch("message", MESSAGE).errors
        assert f"`{error.message}`" in guide


# --- the module alone: the ceiling comes from the host -------------------------------------------------


def discord_module(**helpers: object):
    """``@warden/discord`` built in a bare Lua 5.4 runtime as the kernel builds it: with push and helpers."""
    lua = lua54.LuaRuntime()
    factory = lua.execute(DISCORD_LUA.read_text(encoding="utf-8"))
    actions = lua.table()
    push = lua.eval("function(actions) return function(a) actions[#actions + 1] = a end end")(actions)
    base = {
        "describe": lua.eval(
            "function(v) return type(v) == 'string' and ('%q'):format(v) or tostring(v) end"
        ),
        "utf8_len": lua.eval("utf8.len"),
        "find": lua.eval("string.find"),
    }
    module = factory(push, lua.table_from(base | helpers))
    return lua, module, actions


def test_the_ceiling_is_the_hosts_longest_task_delay_when_it_hands_one_in() -> None:
    lua, discord, actions = discord_module(max_delete_after=60)
    discord.send(MESSAGE["channel_id"], lua.table_from({"content": "x", "delete_after": 60}))
    assert actions[1]["delete_after"] == 60
    with pytest.raises(lua54.LuaError, match="delete_after must be between 1 and 60 seconds, got 61"):
        discord.send(MESSAGE["channel_id"], lua.table_from({"content": "x", "delete_after": 61}))


def test_without_one_the_ceiling_is_900_seconds() -> None:
    lua, discord, actions = discord_module()
    discord.send(MESSAGE["channel_id"], lua.table_from({"content": "x", "delete_after": 900}))
    assert actions[1]["delete_after"] == 900
    with pytest.raises(lua54.LuaError, match="between 1 and 900 seconds, got 901"):
        discord.send(MESSAGE["channel_id"], lua.table_from({"content": "x", "delete_after": 901}))


def test_a_vm_takes_the_ceiling_from_its_task_limits() -> None:
    source = (
        'local d = require("@warden/discord")\n'
        'return { message = function(m) d.send(m.channel_id, { content = "x", delete_after = 61 }) end }'
    )
    vm = GuildVM(7, [ScriptSource("s", source)], SandboxLimits(max_timer_delay_seconds=60))
    [error] = vm.dispatch("message", MESSAGE).errors
    assert error.message == "delete_after must be between 1 and 60 seconds, got 61"
