"""Properties of the translation, checked on generated programs.

1. It never moves a line: programs made of Luau constructs spread over several lines call
   ``mark(n)`` on their line n; running the translation, Lua must report line n for each call.
2. It never changes the meaning of plain Lua 5.1-style code: generated arithmetic, logic and string
   programs give the same values as a Python model of Lua 5.1 semantics (all numbers doubles).
3. Numbers print as Luau prints them: the shortest text that reads back as the same double
   (Python's repr finds the same digits), laid out the way Luau lays them out.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lua_runtime.luau import LuauSyntaxError, translate
from tests.luau.harness import LuauVM

VM = LuauVM()

# 1. Lines ---------------------------------------------------------------------------------------------

# Snippets of Luau, one list item per line; "@" becomes a mark(n) call naming that line, "$" a
# fresh number that keeps names apart. (A mark in a tail call would report its caller's line: none is.)
SNIPPETS = [
    ["local v$: number = @"],
    ["type T$ = {", "\tfield: number,", "\tother: { string }?,", "}", "local v$ = @"],
    ["type U$ =", '\t| "a"', '\t| "b"', "print(@)"],
    ["local t$ = { n = 0 }", "t$.n += @", "t$['n'] -= @"],
    ["local s$ = 'x'", "s$ ..= @", "s$ ..= 'y' ..", "\t@"],
    ["local v$ = if @ > 0", "\tthen @", "\telse @"],
    ["local v$ = `a{", "\t@", "}b{@}`"],
    ["for i = 1, 2 do", "\tif i == 1 then", "\t\tcontinue", "\tend", "\tlocal v$ = @", "end"],
    [
        "local n$ = 0",
        "repeat",
        "\tn$ += 1",
        "\tif n$ == 1 then continue end",
        "\tlocal v$ = @",
        "until n$ >= 2",
    ],
    ["local w$ = 0", "while w$ < 2 do", "\tw$ += @", "end"],
    ["for _, x$ in { 1 } do", "\t@", "end"],
    ["local function f$(a: number,", "\tb: string?): number", "\tlocal r = @", "\treturn r", "end", "f$(1)"],
    ["local v$ = (@ :: any) ::", "\tnumber"],
    ["--[[ a comment", "over lines ]] local v$ = [[", "long", "string]] .. @"],
    ["local v$ = 'a' ..", "\t@ ..", "\t'b'"],
    ["export type E$ = (", "\tx: number", ") -> ()", "local f$: E$ = function(x) @ end", "f$(1)"],
    ["local v$ = {", "\t@,", "\tkey = @,", "}"],
    ["local v$ = #{ @ } // 1"],
]


@st.composite
def marked_programs(draw: st.DrawFn) -> str:
    snippets = draw(st.lists(st.sampled_from(SNIPPETS), min_size=1, max_size=10))
    in_function = draw(st.booleans())
    lines: list[str] = ["local function main()"] if in_function else []
    for number, snippet in enumerate(snippets):
        for text in snippet:
            line = len(lines) + 1
            lines.append(text.replace("$", str(number)).replace("@", f"mark({line})"))
        lines.extend([""] * draw(st.integers(0, 2)))
    if in_function:
        lines += ["end", "main()"]
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(marked_programs())
def test_translation_never_moves_a_line(source: str) -> None:
    lua_source = translate(source)
    assert lua_source.count("\n") == source.count("\n")
    run = VM.run_lua(lua_source)
    assert run.error is None
    assert run.marks, "at least one marked line runs"
    for expected, reported in run.marks:
        assert reported == expected


# 2. Plain Lua 5.1-style code keeps its meaning ------------------------------------------------------------

VARIABLES = {"a": 3.0, "b": 7.5, "c": -2.0}


def lua_div(x: float, y: float) -> float:
    if y == 0:
        if x == 0 or math.isnan(x):
            return math.nan
        return math.copysign(math.inf, x) * math.copysign(1.0, y)
    return x / y


def lua_pow(x: float, y: float) -> float:
    try:
        return math.pow(x, y)
    except OverflowError:
        return math.inf if x > 0 or y % 2 == 0 else -math.inf
    except ValueError:
        return math.nan


def lua_mod(x: float, y: float) -> float:
    return x - math.floor(x / y) * y


numbers = st.one_of(
    st.integers(0, 20).map(lambda n: (str(n), float(n))),
    st.sampled_from([("0.5", 0.5), ("2.25", 2.25), ("1e3", 1000.0), ("0.1", 0.1)]),
    st.sampled_from(sorted(VARIABLES.items())).map(lambda kv: (kv[0], kv[1])),
)
strings = st.sampled_from([("'ab'", "ab"), ('"x y"', "x y"), ("''", ""), ("[[long]]", "long")])


def numeric(children: st.SearchStrategy) -> st.SearchStrategy:
    def binary(op: str, fn: Callable[[float, float], float]) -> st.SearchStrategy:
        return st.tuples(children, children).map(
            lambda p: (f"({p[0][0]} {op} {p[1][0]})", fn(p[0][1], p[1][1]))
        )

    return st.one_of(
        binary("+", lambda x, y: x + y),
        binary("-", lambda x, y: x - y),
        binary("*", lambda x, y: x * y),
        binary("/", lua_div),
        st.tuples(children, st.sampled_from([0, 1, 2, 3])).map(
            lambda p: (f"({p[0][0]} ^ {p[1]})", lua_pow(p[0][1], float(p[1])))
        ),
        st.tuples(numbers, st.integers(1, 7)).map(
            lambda p: (f"({p[0][0]} % {p[1]})", lua_mod(p[0][1], p[1]))
        ),
        children.map(lambda c: (f"(-{c[0]})", -c[1])),
        strings.map(lambda s: (f"(#{s[0]})", float(len(s[1])))),
        st.tuples(conditions(children), children, children).map(
            lambda p: (f"({p[0][0]} and {p[1][0]} or {p[2][0]})", p[1][1] if p[0][1] else p[2][1])
        ),
    )


def conditions(values: st.SearchStrategy) -> st.SearchStrategy:
    compare = {
        "<": lambda x, y: x < y,
        "<=": lambda x, y: x <= y,
        "==": lambda x, y: x == y,
        "~=": lambda x, y: x != y,
    }
    return st.one_of(
        st.sampled_from([("true", True), ("false", False)]),
        st.tuples(values, st.sampled_from(sorted(compare)), values).map(
            lambda p: (f"({p[0][0]} {p[1]} {p[2][0]})", compare[p[1]](p[0][1], p[2][1]))
        ),
    )


expressions = st.recursive(numbers, numeric, max_leaves=8)
string_expressions = st.recursive(
    strings,
    lambda children: st.one_of(
        st.tuples(children, children).map(lambda p: (f"({p[0][0]} .. {p[1][0]})", p[0][1] + p[1][1])),
        st.tuples(children, st.integers(0, 3)).map(
            lambda p: (f"string.rep({p[0][0]}, {p[1]})", p[0][1] * p[1])
        ),
        children.map(lambda c: (f"({c[0]}):upper()", c[1].upper())),
    ),
    max_leaves=5,
)


@st.composite
def statements(draw: st.DrawFn) -> tuple[str, list[object]]:
    kind = draw(st.sampled_from(["value", "string", "if", "for", "logic"]))
    if kind == "value":
        code, value = draw(expressions)
        return f"results[#results + 1] = {code}", [value]
    if kind == "string":
        code, value = draw(string_expressions)
        return f"results[#results + 1] = {code}", [value]
    if kind == "logic":
        code, value = draw(conditions(expressions))
        return f"results[#results + 1] = not not {code}", [value]
    if kind == "if":
        (condition, truth), (yes, yes_value), (no, no_value) = draw(
            st.tuples(conditions(expressions), expressions, expressions)
        )
        code = (
            f"if {condition} then\n  results[#results + 1] = {yes}\nelse\n  results[#results + 1] = {no}\nend"
        )
        return code, [yes_value if truth else no_value]
    count = draw(st.integers(0, 4))
    step_code, step_value = draw(expressions)
    total = 0.0
    for i in range(1, count + 1):
        total = total + step_value * i
    code = f"local acc = 0\nfor i = 1, {count} do\n  acc = acc + {step_code} * i\nend\nresults[#results + 1] = acc"
    return f"do\n{code}\nend", [total]


def same_value(lua_value: object, expected: object) -> bool:
    if isinstance(expected, float):
        if math.isnan(expected):
            return isinstance(lua_value, float) and math.isnan(lua_value)
        return (
            isinstance(lua_value, (int, float)) and not isinstance(lua_value, bool) and lua_value == expected
        )
    return lua_value == expected


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(statements(), min_size=1, max_size=6))
def test_plain_lua_keeps_its_meaning(program: list[tuple[str, list[object]]]) -> None:
    header = "local a, b, c = 3, 7.5, -2\nlocal results = {}\n"
    source = header + "\n".join(code for code, _ in program) + "\nreturn results\n"
    expected = [value for _, values in program for value in values]
    run = VM.run(source)
    assert run.error is None
    assert len(run.returned) == len(expected)
    for got, want in zip(run.returned, expected, strict=True):
        assert same_value(got, want), (got, want)


# 3. Numbers print as in Luau ------------------------------------------------------------------------------


def luau_number_text(x: float) -> str:
    """Luau's layout of the shortest round-trip digits (which Python's repr finds)."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign = "-" if x < 0 else ""
    mantissa, _, exponent = repr(abs(x)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    leading_zeros = len(whole + fraction) - len((whole + fraction).lstrip("0"))
    dot = len(whole) - leading_zeros + (int(exponent) if exponent else 0)
    digits = digits.rstrip("0")
    if dot < -5 or dot > 21:
        rest = "." + digits[1:] if len(digits) > 1 else ""
        power = dot - 1
        return f"{sign}{digits[0]}{rest}e{'+' if power >= 0 else '-'}{abs(power):02d}"
    if dot <= 0:
        return f"{sign}0.{'0' * -dot}{digits}"
    if dot >= len(digits):
        return sign + digits + "0" * (dot - len(digits))
    return f"{sign}{digits[:dot]}.{digits[dot:]}"


def test_reference_layout_matches_facts_measured_on_luau() -> None:
    facts = {
        5.0: "5",
        0.30000000000000004: "0.30000000000000004",
        1e21: "1e+21",
        1e20: "100000000000000000000",
    }
    facts |= {1e-7: "1e-07", 1e-5: "0.00001", 2.0**63: "9223372036854776000", -0.0: "-0", 5e-324: "5e-324"}
    for value, text in facts.items():
        assert luau_number_text(value) == text


any_double = st.integers(0, 2**64 - 1).map(lambda bits: struct.unpack("<d", bits.to_bytes(8, "little"))[0])


@settings(max_examples=500, deadline=None)
@given(st.one_of(any_double, st.floats(-1e6, 1e6), st.integers(-(2**60), 2**60).map(float)))
def test_numbers_print_as_luau_prints_them(x: float) -> None:
    assert VM.stdlib.tostring(x) == luau_number_text(x)


def test_every_power_of_two_prints_its_shortest_form() -> None:
    # Powers of two are where the shortest form is hardest to find (a narrower interval below them).
    tostring = VM.stdlib.tostring
    for exponent in range(-1074, 1024):
        for value in (2.0**exponent, -(2.0**exponent)):
            assert tostring(value) == luau_number_text(value)


# 4. Syntax errors name the line they are on -------------------------------------------------------------

# (A stray `end` is not here: inside a function it closes the function, and the error is then
# reported further down, as Luau reports it.)
BROKEN_LINES = [
    "print(1))",
    "local = 5",
    "x = = 1",
    "until true",
    "local t = {1, 2}}",
    "if x then else else end",
]


@st.composite
def programs_with_one_broken_line(draw: st.DrawFn) -> tuple[str, int]:
    lines = draw(marked_programs()).splitlines()
    # Between two snippets' statements (never inside a multi-line one): before a line that starts
    # a statement at the snippets' own indentation, or at the very end.
    boundaries = [i for i, line in enumerate(lines) if line.startswith(("local ", "type ", "for ", "print("))]
    at = draw(st.sampled_from([*boundaries, len(lines)]))
    lines.insert(at, draw(st.sampled_from(BROKEN_LINES)))
    return "\n".join(lines) + "\n", at + 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs_with_one_broken_line())
def test_syntax_errors_name_the_broken_line(case: tuple[str, int]) -> None:
    source, line = case
    try:
        translate(source)
    except LuauSyntaxError as error:
        assert error.line == line, (error.message, source)
    else:
        raise AssertionError("the broken line was accepted")
