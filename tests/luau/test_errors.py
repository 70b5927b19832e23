"""Errors name the author's line: syntax errors from the translator, runtime errors from Lua.

Every program here was also run by real Luau 0.686, and the lines asserted are the lines Luau
reports. Messages of syntax errors follow Luau's wording; runtime messages are Lua 5.4's (see
docs/luau.md), so only their line is asserted.
"""

from __future__ import annotations

import pytest

from lua_runtime.luau import LuauSyntaxError, translate
from tests.luau.harness import LuauVM

CONFIG_TYPE = """type Config = {
\tlimit: number,
\twords: { string },
}
"""


def syntax_error(source: str) -> LuauSyntaxError:
    with pytest.raises(LuauSyntaxError) as caught:
        translate(source)
    return caught.value


# Syntax errors --------------------------------------------------------------------------------------


def test_missing_end_after_a_multiline_type_at_top_level() -> None:
    error = syntax_error(CONFIG_TYPE + 'local x = 1\nif x then\n\tprint(x)\nelse\n\tprint("no")\n')
    assert (error.line, error.message) == (10, "Expected 'end' (to close 'else' at line 8), got <eof>")
    assert str(error) == "line 10: Expected 'end' (to close 'else' at line 8), got <eof>"


def test_incomplete_expression_inside_a_function_with_a_multiline_parameter_type() -> None:
    error = syntax_error("local function f(a: {\n\tx: number,\n}): number\n\tlocal y = a.x +\nend\n")
    assert error.line == 5
    assert error.message == "Expected expression, got 'end'"


def test_malformed_type_inside_a_multiline_alias() -> None:
    error = syntax_error("type T = {\n\ta: number,\n\tb: ,\n}\n")
    assert (error.line, error.column, error.message) == (3, 5, "Expected type, got ','")


def test_unclosed_loop_inside_a_function_after_a_multiline_function_type() -> None:
    source = (
        "export type Handler = (\n\tmessage: string,\n\tcount: number\n) -> boolean\n\n"
        "local function handle(message: string, count: number): boolean\n"
        "\tfor i = 1, count do\n\t\tif i > 1 then\n\t\t\tbreak\n\tend\n\treturn true\n"
    )
    error = syntax_error(source)
    assert (error.line, error.message) == (12, "Expected 'end' (to close 'do' at line 7), got <eof>")


def test_unfinished_interpolation_reports_the_string_line() -> None:
    source = CONFIG_TYPE + "local p = { first = 1 }\nlocal s = `{p.first} and {p.second\n"
    error = syntax_error(source)
    assert error.line == 6
    assert error.message.startswith("Malformed interpolated string")


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("local x = 1\nlocal s = 'abc\n", 2, "Malformed string; did you forget to finish it?"),
        ("print(0x1p4)", 1, "Malformed number"),
        ("local t = {1, 2", 1, "Expected '}' (to close '{' at line 1), got <eof>"),
        (
            "print(`{{1}}`)",
            1,
            "Double braces are not permitted within interpolated strings; did you mean '\\{'?",
        ),
        ("local x = if true then 1", 1, "Expected 'else' when parsing if then else expression"),
        ("continue", 1, "continue statement must be inside a loop"),
        ("return 1\nprint(2)", 2, "Expected 'end' or <eof> after return, got 'print'"),
        ("while true do end end", 1, "Expected <eof>, got 'end'"),
        ("x.y", 1, "Incomplete statement: expected assignment or a function call"),
        (
            "repeat\n\tlocal a = 1\n\tif a then continue end\n\tlocal b = 2\nuntil b",
            5,
            "Local b used in the repeat..until condition is undefined because continue statement on line 3 "
            "jumps over it",
        ),
    ],
)
def test_messages_read_like_luau(source: str, line: int, message: str) -> None:
    error = syntax_error(source)
    assert (error.line, error.message) == (line, message)


# Lua 5.4 syntax that Luau does not have ---------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "local x <close> = nil",
        "local x <const> = 1",
        "local a, b <close> = 1, nil",
        "goto done",
        "for i = 1, 2 do goto continue end",
        "::done::",
        "local x = 1 & 2",
        "local x = 1 | 2",
        "local x = ~1",
        "local x = 1 << 2",
        "local x = 1 >> 2",
        "local x = 1 ~ 2",
        "local goto = 1",
    ],
)
def test_lua54_only_syntax_is_refused(source: str) -> None:
    error = syntax_error(source)
    assert error.line == 1


def test_close_attribute_never_reaches_lua() -> None:
    error = syntax_error("local a = 1\nlocal h <close> = setmetatable({}, {__close = print})\n")
    assert error.line == 2
    assert "<close>" in error.message


def test_goto_as_a_field_name_still_works() -> None:
    run = LuauVM().run("local t = { goto = 1 }\nt.goto += 1\nprint(t.goto, t['goto'])")
    assert run.output == ["2\t2"]


# Runtime errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "line", "fragment"),
    [
        (
            CONFIG_TYPE + "\nlocal cfg: Config = { limit = 3, words = {} }\n"
            "local n: number = cfg.missing :: any\nprint(n + 1)\n",
            8,
            "attempt to perform arithmetic on a nil value",
        ),
        (
            "export type Handler = (\n\tmessage: string,\n\tcount: number\n) -> boolean\n\n"
            "local function handle(message: string,\n\tcount: number): boolean\n"
            "\tlocal total = count + #message\n\treturn total .. (nil :: any)\nend\nhandle('x', 1)\n",
            9,
            "attempt to concatenate a nil value",
        ),
        (
            'type Shape =\n\t| { kind: "circle", radius: number }\n\t| { kind: "square", side: number }\n\n'
            "local function describe(shape: Shape): string\n"
            '\tlocal label = if shape.kind == "circle"\n'
            "\t\tthen `circle of radius {shape.radius}`\n"
            "\t\telse `square of side {shape.side}`\n"
            "\tfor i = 1, 3 do\n\t\tif i < 3 then\n\t\t\tcontinue\n\t\tend\n"
            "\t\terror(`bad shape {label}`)\n\tend\n\treturn label\nend\n"
            'describe({ kind = "circle", radius = 2 })\n',
            13,
            "bad shape circle of radius 2",
        ),
        (
            "type Counter = {\n\tcount: number,\n}\nlocal counter: Counter = { count = 0 }\n"
            'counter.count += 1\nlocal items = {\n\t"a",\n\t"b",\n}\n'
            "for _, item in items do\n\tcounter.count += item:len()\nend\ncounter.missing.count += 1\n",
            13,
            "attempt to index a nil value",
        ),
        ("local t = table.freeze({})\n\n\nt.x = 1\n", 4, "attempt to modify a readonly table"),
        (
            "type A = {\n\tx: number,\n}\nfor k in 5 :: any do\nend\n",
            4,
            "attempt to iterate over a number value",
        ),
    ],
)
def test_runtime_errors_name_the_authors_line(source: str, line: int, fragment: str) -> None:
    run = LuauVM().run(source, name="rules")
    assert run.error is not None
    assert run.error.startswith(f"rules:{line}: ")
    assert fragment in run.error


def test_library_argument_errors_name_the_callers_line() -> None:
    source = "local ok = 1\nlocal x = string.format('%d', {})\n"
    run = LuauVM().run(source)
    assert run.error == "script:2: bad argument #2 to 'format' (number expected, got table)"
    run = LuauVM().run("local t = {}\n\nlocal i = table.find(nil, 1)\n")
    assert run.error == "script:3: invalid argument #1 to 'find' (table expected, got nil)"


@pytest.mark.parametrize(
    "annotation",
    [
        "{" * 500 + "}" * 500,
        "(" * 500 + "number" + ")" * 500,
        "() -> " * 500 + "number",
        "{ x: " * 300 + "}" * 300,
    ],
    ids=["tables", "parentheses", "functions", "fields"],
)
def test_deeply_nested_types_are_a_syntax_error_not_a_crash(annotation: str) -> None:
    error = syntax_error(f"type T = {annotation}\nreturn {{}}")
    assert error.line == 1
    assert "recursion depth" in error.message
