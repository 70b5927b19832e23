"""The translator's contract with the sandbox: lines kept, output cached, Lua 5.4 semantics kept
out of reach where Luau differs."""

from __future__ import annotations

import pytest

from lua_runtime.luau import LuauSyntaxError, translate, translation_cache
from lua_runtime.luau.translator import lua_number
from tests.luau.harness import LuauVM


def test_same_number_of_lines_for_a_program_using_every_translated_construct() -> None:
    source = """type Row = {
\tname: string,
\tscore: number,
}
local rows: { Row } = {}
local total = 0
for i = 1, 3 do
\tif i == 2 then continue end
\ttotal += i
end
local label = if total > 3
\tthen `big {
\t\ttotal
\t}`
\telse "small"
local s = "a" ..
\ttotal ..
\t"b"
print(label, s, #rows, total % 3)
"""
    lua = translate(source)
    assert lua.count("\n") == source.count("\n")
    run = LuauVM().run_lua(lua)
    assert run.error is None
    assert run.output == ["big 4\ta4b\t0\t1"]


@pytest.mark.parametrize("source", ["\n", "\n\n", "  \n\t\n", "\n\nlocal x = nil + 1\n", " \n -- c\n"])
def test_blank_lines_before_the_first_statement_are_kept(source: str) -> None:
    lua = translate(source)
    assert lua.count("\n") == source.count("\n")
    assert lua.strip() == translate(source.strip() + "\n").strip()


def test_a_runtime_error_after_leading_blank_lines_names_its_line() -> None:
    run = LuauVM().run("\n\n\nlocal x = nil + 1\n")
    assert run.error is not None and run.error.startswith("script:4:")


def test_translations_are_cached() -> None:
    source = "local cached_marker = 1 + 1\n"
    translation_cache.clear()
    first = translate(source)
    assert translation_cache.info().misses == 1
    assert translate(source) is first
    assert translation_cache.info().hits == 1


def test_plain_lua_text_is_kept_apart_from_numbers() -> None:
    source = 'local t = { "x", y = 2 }\nprint(t[1], t.y, ("a"):rep(2))\n-- comment 7\n'
    assert (
        translate(source) == 'local t = { "x", y = 2.0 }\nprint(t[1.0], t.y, ("a"):rep(2.0))\n-- comment 7\n'
    )


@pytest.mark.parametrize(
    ("literal", "lua"),
    [
        ("10", "10.0"),
        ("1_000", "1000.0"),
        ("0.5", "0.5"),
        ("1e3", "1e3"),
        ("0xff", "255.0"),
        ("0b101", "5.0"),
        ("0xFFFFFFFFFFFFFFFFF", "1.8446744073709552e+19"),
        ("9007199254740993", "9007199254740993.0"),
    ],
)
def test_numeric_literals_become_floats(literal: str, lua: str) -> None:
    assert lua_number(literal) == lua


def test_generic_for_never_passes_a_fourth_value_to_lua() -> None:
    # In Lua 5.4 a fourth value in a generic for is a to-be-closed variable; Luau has none, and the
    # sandbox relies on __close never running.
    source = """
local closed = false
local closer = setmetatable({}, { __close = function() closed = true end })
for k in next, { 1 }, nil, closer do end
local function four() return next, { 1 }, nil, closer end
for k in four() do end
print(closed)
"""
    run = LuauVM().run(source)
    assert run.error is None
    assert run.output == ["false"]


def test_concatenation_keeps_metamethods_and_luau_numbers() -> None:
    source = """
local Name = setmetatable({}, { __concat = function(a, b)
\treturn "<" .. tostring(type(a) == "table" and "name" or a) .. "|" .. tostring(type(b) == "table" and "name" or b) .. ">"
end })
print(Name .. "x", 1 .. Name, 10 / 2 .. "", "v" .. 2 ^ 0.5)
"""
    run = LuauVM().run(source)
    assert run.error is None
    assert run.output == ["<name|x>\t<1|name>\t5\tv1.4142135623730951"]


def test_compound_assignment_evaluates_target_once_and_value_after_it() -> None:
    source = """
local log = {}
local t = { list = { 0 } }
local function obj() table.insert(log, "obj") return t end
local function key() table.insert(log, "key") return "list" end
local function value() table.insert(log, "value") return 5 end
obj()[key()][1] += value()
print(table.concat(log, " "), t.list[1])
"""
    run = LuauVM().run(source)
    assert run.output == ["obj key value\t5"]


def test_if_expression_evaluates_only_the_branch_taken() -> None:
    source = """
local calls = 0
local function f() calls += 1 return false end
local a = if calls == 0 then f() else f()
local b = if a then "yes" else "no"
print(a, b, calls)
"""
    assert LuauVM().run(source).output == ["false\tno\t1"]


def test_deeply_nested_code_is_refused_rather_than_crashing() -> None:
    source = "local x = " + "(" * 300 + "1" + ")" * 300
    with pytest.raises(LuauSyntaxError) as caught:
        translate(source)
    assert "recursion depth" in caught.value.message


def test_long_left_associative_chains_translate_like_lua_reads_them() -> None:
    # Lua reads `a + b + ...` in a loop, so a long chain is valid however deep its tree is.
    source = "local a = 1\nlocal total = " + " + ".join(["a"] * 1000) + "\nprint(total, a or a or a or 2)\n"
    run = LuauVM().run(source)
    assert run.error is None
    assert run.output == ["1000\t1"]


def test_nesting_too_deep_for_the_translator_is_a_syntax_error() -> None:
    with pytest.raises(LuauSyntaxError) as caught:
        translate("local x = " + "if a then f() else " * 400 + "1")
    assert caught.value.line == 1
    assert "recursion depth" in caught.value.message
