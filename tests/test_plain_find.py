"""string.find's plain searches, answered by the kernel without compiling patterns.lua.

Most scripts search messages for plain text; the kernel's string.find does those searches in C
itself (within the same cost bound as patterns.lua) so that a VM carries patterns.lua only once a
script uses a real pattern. These tests check that the shortcut answers exactly as C does, that
it is taken only where a plain search is what C would do, and that the rest still goes through
patterns.lua.
"""

from __future__ import annotations

import pytest
from lupa import lua54

from lua_runtime.guild_vm import GuildVM, ScriptSource
from lua_runtime.limits import SandboxLimits

#: Arguments of string.find, as Lua source, each searched in a VM and in a bare runtime.
CALLS = [
    '"hello badword here", "badword", 1, true',
    '"hello badword here", "badword"',
    '"hello badword here", "badword", 9',
    '"hello badword here", "badword", -4',
    '"hello badword here", "here", -4',
    '"hello badword here", "o", 100',
    '"hello badword here", "o", -100',
    '"hello", "", 3',
    '"hello", "", 6',
    '"hello", "", 7',
    '"", "", 1, true',
    '"a.b", ".", 1, true',
    '"a.b", "a.b", 1, true',
    '"50% off", "%", 1, true',
    '"x(y)", "(y", 1, true',
    '"caf\\195\\169", "\\195\\169"',
    '"abcabc", "c", 4.0',
]


def vm_prints(source: str) -> list[str]:
    vm = GuildVM(1, [ScriptSource("script", source + "\nreturn {}")], SandboxLimits())
    assert vm.load_errors == []
    return [line.text for line in vm.load_output]


def c_prints(args: str) -> str:
    lua = lua54.LuaRuntime()
    return lua.execute(f"local a, b = string.find({args}) return tostring(a) .. '\\t' .. tostring(b)")


@pytest.mark.parametrize("args", CALLS)
def test_plain_searches_answer_as_c_does(args: str) -> None:
    printed = vm_prints(f"local a, b = string.find({args}) print(tostring(a) .. '\\t' .. tostring(b))")
    assert printed == [c_prints(args)]


def test_plain_searches_do_not_compile_the_pattern_wrappers(fetched: list[str]) -> None:
    source = """
local msg = "Hello there, General Kenobi! A perfectly ordinary message."
print(string.find(msg, "Kenobi", 1, true), msg:find("ordinary"), msg:find("missing"), msg:find(".", 1, true))
"""
    assert vm_prints(source) == ["22\t42\tnil\t58\t58"]
    assert "patterns" not in fetched


@pytest.mark.parametrize(
    "call",
    [
        'string.find("a.b", ".")',  # a special character, searched as a pattern
        'string.find("aaa", "a+", 1)',
        'string.find("abc", "b", 1.5, true)',  # an init C refuses: patterns.lua raises C's error
        'string.find(string.rep("a", 200000), "b", 1, true)',  # past the plain search's bound
        'string.find(12345, "3", 1, true)',  # a number subject, converted as C does
    ],
)
def test_every_other_search_goes_through_patterns_lua(fetched: list[str], call: str) -> None:
    vm = GuildVM(
        1, [ScriptSource("script", f"pcall(function() return {call} end)\nreturn {{}}")], SandboxLimits()
    )
    assert vm.load_errors == []
    assert "patterns" in fetched


def test_a_refused_init_is_reported_as_c_reports_it() -> None:
    printed = vm_prints('print(pcall(string.find, "abc", "b", 1.5, true))')
    assert printed == ["false\tbad argument #3 to 'find' (number has no integer representation)"]
