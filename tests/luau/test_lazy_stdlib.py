"""The Luau standard library's lazy groups, in real guild VMs.

stdlib.lua keeps only a core in every VM and compiles each group (number formatting, split, the
table and math additions, bit32) the first time a script needs it: these tests check that a group
is loaded only then and only once, that the library tables guests see stay read-only and empty to
``rawget`` through a lazy load, that the corpus prints the same through the sandbox as through the
plain harness, and that a first use into a full heap is the script's memory error, not an abort.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lua_runtime.events import sample_payload
from lua_runtime.guild_vm import GuildVM, ScriptSource
from lua_runtime.limits import SandboxLimits
from tests.sandbox.attack import Attack, Case, assert_stopped, run_attacks

CORPUS = Path(__file__).with_name("corpus")

GROUPS = (
    "luau_numbers",
    "luau_format",
    "luau_names",
    "luau_strings",
    "luau_tables",
    "luau_maths",
    "luau_bit32",
)

#: A first use of each group, as an expression that is true (printing a fraction would load the
#: number formatting group; printing a boolean loads nothing).
FIRST_USES = {
    "luau_numbers": 'tostring(2.5) == "2.5"',
    "luau_format": 'string.format("%d", 7) == "7"',
    "luau_names": '#tostring({}) == #"table: 0x00000001"',
    "luau_strings": '("a,b"):split(",")[2] == "b"',
    "luau_tables": "table.isfrozen(table.freeze({}))",
    "luau_maths": "math.clamp(5, 1, 3) == 3",
    "luau_bit32": "bit32.band(6, 3) == 2",
}


def run_top_level(source: str) -> list[str]:
    """What ``source`` prints at its top level in a fresh guild VM (it returns no handlers)."""
    vm = GuildVM(1, [ScriptSource("script", source + "\nreturn {}")], SandboxLimits())
    assert vm.load_errors == []
    return [line.text for line in vm.load_output]


def test_a_vm_whose_scripts_use_no_addition_loads_no_group(fetched: list[str]) -> None:
    source = 'local t = {} for i, v in {"a"} do t[i] = v .. "!" end print(t[1], #t, `{7 % 3}`, 2 ^ 40, -3)'
    assert run_top_level(source) == ["a!\t1\t1\t1099511627776\t-3"]
    assert not set(fetched) & set(GROUPS)


def test_string_format_loads_its_group_on_its_first_call(fetched: list[str]) -> None:
    # Luau's string.format is in format.lua; the number formatting comes once a fraction is formatted.
    output = run_top_level('print(string.format("%d %s", 7, "x"))\nprint(("%5.1f|%*"):format(2.25, 0.5))')
    assert output == ["7 x", "  2.2|0.5"]
    assert [name for name in fetched if name in GROUPS] == ["luau_format", "luau_numbers"]


@pytest.mark.parametrize("group", GROUPS)
def test_each_group_is_loaded_on_first_use_and_only_once(fetched: list[str], group: str) -> None:
    use = FIRST_USES[group]
    output = run_top_level(f"print({use})\nprint({use})")
    assert output == ["true", "true"]
    assert [name for name in fetched if name in GROUPS] == [group]


def test_iterating_a_library_lists_its_additions_before_any_was_used() -> None:
    source = (
        "local names = {}\n"
        "for name in pairs(math) do if name == 'clamp' or name == 'round' then names[#names + 1] = name end end\n"
        "for name in bit32 do if name == 'band' then names[#names + 1] = name end end\n"
        "table.sort(names)\n"
        "print(table.concat(names, ' '), table.clone(table).freeze ~= nil)"
    )
    assert run_top_level(source) == ["band clamp round\ttrue"]


def test_a_library_view_stays_read_only_and_empty_to_rawget_through_a_lazy_load() -> None:
    source = (
        "local function attempts(name)\n"
        "  local write = pcall(function() math[name] = print end)\n"
        "  local raw = pcall(rawset, math, name, print)\n"
        "  return write, raw, rawget(math, name), next(math), getmetatable(math)\n"
        "end\n"
        "print(attempts('clamp'))\n"
        "print(math.clamp(5, 1, 3), rawequal(math.clamp, math.clamp))\n"
        "print(attempts('clamp'))\n"
        "print(attempts('sign'))"
    )
    assert run_top_level(source) == [
        "false\tfalse\tnil\tnil\tfalse",
        "3\ttrue",
        "false\tfalse\tnil\tnil\tfalse",
        "false\tfalse\tnil\tnil\tfalse",
    ]


def test_a_missing_field_of_a_lazy_library_stays_missing() -> None:
    assert run_top_level("print(math.nope, table.nope, bit32.nope, math.clamp ~= nil, math.nope)") == [
        "nil\tnil\tnil\ttrue\tnil"
    ]


@pytest.mark.parametrize("program", sorted(CORPUS.glob("*.luau")), ids=lambda path: path.stem)
def test_the_corpus_prints_the_same_through_the_sandbox(program: Path) -> None:
    vm = GuildVM(1, [ScriptSource("script", program.read_text())], SandboxLimits())
    printed = "".join(line.text + "\n" for line in vm.load_output)
    assert printed == program.with_suffix(".out").read_text()


# Each case fills the heap from a coroutine (whose resume hands the memory error back as a value,
# so the handler goes on with a full heap), then uses a group for the first time in the VM.
FULL_HEAP_FIRST_USES = {
    group: Case(
        "keep = {}\n"
        "return { message = function()\n"
        "  coroutine.resume(coroutine.create(function() while true do keep[#keep + 1] = {} end end))\n"
        f"  return {use}\n"
        "end }",
        events=2,
    )
    for group, use in {**FIRST_USES, "string.format": 'string.format("%d", 7) == "7"'}.items()
}
# @warden/discord's builders load the same way, on a script's first call of one.
FULL_HEAP_FIRST_USES["@warden/discord builders"] = Case(
    'local discord = require("@warden/discord")\n'
    "keep = {}\n"
    "return { message = function()\n"
    "  coroutine.resume(coroutine.create(function() while true do keep[#keep + 1] = {} end end))\n"
    '  discord.log("first")\n'
    "end }",
    events=2,
)


@pytest.fixture(scope="module")
def full_heap_runs() -> dict[str, Attack]:
    return run_attacks(FULL_HEAP_FIRST_USES)


@pytest.mark.parametrize("group", sorted(FULL_HEAP_FIRST_USES))
def test_a_first_use_into_a_full_heap_is_the_memory_limit_not_an_abort(
    full_heap_runs: dict[str, Attack], group: str
) -> None:
    # The group's bytecode goes in under the host's ceiling; its code then runs under the guest's,
    # above which the heap now is: the script fails with its memory error, and the VM (rebuilt, as
    # its heap stays full) serves the next events and the witness script.
    result = full_heap_runs[group]
    result.check_witness()
    for event in result.events:
        assert_stopped(event.error_of("attack"), "memory_limit")


def test_discord_builders_load_on_the_first_call_of_one(fetched: list[str]) -> None:
    idle = GuildVM(
        1, [ScriptSource("idle", 'local d = require("@warden/discord")\nreturn {}')], SandboxLimits()
    )
    assert "discord" not in fetched and not idle.load_errors
    acting = (
        'local d = require("@warden/discord")\n'
        "return { message = function(msg) d.reply(msg, 'hi') d.log('one') end }"
    )
    vm = GuildVM(2, [ScriptSource("acting", acting)], SandboxLimits())
    result = vm.dispatch("message", sample_payload("message"))
    assert [action["type"] for action in result.actions] == ["reply", "log"]
    assert fetched.count("discord") == 1
