"""Bounded pattern matching: the Lua engine and the wrappers against Lua 5.4's own C functions.

Every comparison runs in one real ``lupa.lua54`` runtime: the C functions, the engine
(``pattern_engine.lua``) and the wrappers (``patterns.lua``) are called from the same line of the
same chunk, so results *and* error messages (position included) must be identical. Then the
pathological calls the wrappers exist for, stopped by a count hook as the sandbox's would be, and
which way the common calls go.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lupa import lua54

LUA_DIR = resources.files("lua_runtime") / "lua"

# Calls one function of F from a known line of a chunk named "script": C, the engine and the
# wrappers all raise their errors at that line. Results come back as packed tables.
CALLER = b"""
local F, kind, subject, pattern, a3, a4, nargs = ...
local pack, unpack = table.pack, table.unpack
local REPL_FUNCTIONS = {
  function() return nil end,
  function(whole) return whole .. "!" end,
  function(_, second) return second end,
  function() return {} end,
  function(first) return first == "a" and false or 7 end,
  function(...) return select("#", ...) end,
}
local REPL_TABLE = { a = "A", b = false, ["("] = 5, x = {}, [1] = "one", [""] = "E" }
local args = { subject, pattern, a3, a4 }
if kind == "gsub_function" then args[3] = REPL_FUNCTIONS[a3] end
if kind == "gsub_table" then args[3], nargs = REPL_TABLE, math.max(nargs, 3) end
local function run()
  if kind == "find" then return pack(F.find(unpack(args, 1, nargs)))
  elseif kind == "match" then return pack(F.match(unpack(args, 1, nargs)))
  elseif kind == "gmatch" then
    local out, next_match = {}, F.gmatch(unpack(args, 1, nargs))
    while #out < 200 do
      local r = pack(next_match())
      if r.n == 0 then break end
      out[#out + 1] = r
    end
    return out
  else return pack(F.gsub(unpack(args, 1, nargs)))
  end
end
return pcall(run)
"""


@dataclass
class Lua:
    """One runtime holding the three implementations and the caller chunk."""

    runtime: lua54.LuaRuntime
    c: Any
    engine: Any
    safe: Any
    caller: Any

    def call(self, impl: Any, kind: str, *args: Any) -> tuple[bool, Any]:
        padded = [*args, None, None, None, None][:4]
        ok, result = self.caller(impl, kind.encode(), *padded, len(args))
        return bool(ok), to_python(result)


def to_python(value: Any) -> Any:
    if lua54.lua_type(value) == "table":
        n = value["n"]
        length = n if n is not None else len(value)
        return [to_python(value[i]) for i in range(1, length + 1)]
    return value


def read_chunk(name: str) -> bytes:
    return (LUA_DIR / name).read_bytes()


def new_lua() -> Lua:
    runtime = lua54.LuaRuntime(encoding=None)
    c = runtime.eval(
        b"{ find = string.find, match = string.match, gmatch = string.gmatch, gsub = string.gsub }"
    )
    engine_factory = runtime.execute(read_chunk("pattern_engine.lua"))
    engine = engine_factory(c)
    load_engine = runtime.eval(b"function(factory) return function() return factory end end")(engine_factory)
    safe = runtime.execute(read_chunk("patterns.lua"))(c, load_engine)
    caller = runtime.eval(b"function(src) return assert(load(src, '=script')) end")(CALLER)
    return Lua(runtime, c, engine, safe, caller)


@pytest.fixture(scope="module")
def lua() -> Lua:
    return new_lua()


def caller_line(fragment: bytes) -> int:
    """The line of CALLER that holds `fragment`, as Lua numbers it."""
    return next(number for number, line in enumerate(CALLER.split(b"\n"), 1) if fragment in line)


def assert_same(lua: Lua, kind: str, *args: Any) -> None:
    expected = lua.call(lua.c, kind, *args)
    assert lua.call(lua.engine, kind, *args) == expected, ("engine", kind, args)
    assert lua.call(lua.safe, kind, *args) == expected, ("wrappers", kind, args)


# Differential tests -------------------------------------------------------------------------------

SUBJECT_CHARS = "aab b()x.%-[]^"
CLASSES = [
    "a", "b", "x", " ", ".", "%a", "%d", "%s", "%w", "%p", "%l", "%u", "%x", "%c", "%g", "%S", "%A",
    "%W", "%P", "%(", "%)", "%.", "%%", "%-", "%[", "%]", "%^", "[ab]", "[^a]", "[a-c]", "[%s%p]",
    "[%]]", "[^%w]", "[(]", "[.-]", "[]]", "[^]a]", "[a-]",
]  # fmt: skip
SPECIAL_ITEMS = ["%b()", "%bab", "%f[%w]", "%f[^a]", "%f[%s]", "%1", "%2", "()", "$", "^"]
# Fragments C rejects when (and only when) the matcher reaches them.
MALFORMED = ["%", "[", "[^", ")", "(", "%f", "%fa", "%b", "%b(", "%0", "%9", "[%", "]"]

single_items = st.tuples(st.sampled_from(CLASSES), st.sampled_from(["", "", "*", "+", "-", "?"])).map("".join)
units = st.one_of(
    single_items, single_items, single_items, st.sampled_from(SPECIAL_ITEMS), st.sampled_from(MALFORMED)
)
trees = st.recursive(
    units, lambda inner: st.lists(inner, max_size=3).map(lambda xs: "(" + "".join(xs) + ")"), max_leaves=6
)
patterns = st.tuples(
    st.sampled_from(["", "", "^"]), st.lists(trees, max_size=5).map("".join), st.sampled_from(["", "", "$"])
).map(lambda parts: "".join(parts).encode())
subjects = st.one_of(st.text(SUBJECT_CHARS, max_size=14).map(str.encode), st.integers(-20, 2000))
positions = st.one_of(st.none(), st.integers(-16, 16))
replacement_strings = st.lists(
    st.sampled_from(["a", "-", "%0", "%1", "%2", "%%", "%x", "%", "<", ">"]), max_size=4
).map(lambda xs: "".join(xs).encode())

DIFFERENTIAL = settings(max_examples=200, deadline=None)


@DIFFERENTIAL
@given(subject=subjects, pattern=patterns, init=positions, plain=st.sampled_from([None, True, False]))
def test_find_matches_c(lua: Lua, subject: Any, pattern: bytes, init: int | None, plain: bool | None) -> None:
    assert_same(lua, "find", subject, pattern, init, plain)


@DIFFERENTIAL
@given(subject=subjects, pattern=patterns, init=positions)
def test_match_matches_c(lua: Lua, subject: Any, pattern: bytes, init: int | None) -> None:
    assert_same(lua, "match", subject, pattern, init)


@DIFFERENTIAL
@given(subject=subjects, pattern=patterns, init=positions)
def test_gmatch_matches_c(lua: Lua, subject: Any, pattern: bytes, init: int | None) -> None:
    assert_same(lua, "gmatch", subject, pattern, init)


@DIFFERENTIAL
@given(
    subject=subjects,
    pattern=patterns,
    repl=replacement_strings,
    max_n=st.one_of(st.none(), st.integers(-1, 4)),
)
def test_gsub_with_string_matches_c(
    lua: Lua, subject: Any, pattern: bytes, repl: bytes, max_n: int | None
) -> None:
    assert_same(lua, "gsub", subject, pattern, repl, max_n)


@DIFFERENTIAL
@given(
    subject=subjects,
    pattern=patterns,
    function=st.integers(1, 6),
    max_n=st.one_of(st.none(), st.integers(0, 3)),
)
def test_gsub_with_function_matches_c(
    lua: Lua, subject: Any, pattern: bytes, function: int, max_n: int | None
) -> None:
    assert_same(lua, "gsub_function", subject, pattern, function, max_n)


@DIFFERENTIAL
@given(subject=subjects, pattern=patterns)
def test_gsub_with_table_matches_c(lua: Lua, subject: Any, pattern: bytes) -> None:
    assert_same(lua, "gsub_table", subject, pattern)


# The cases below pin down each error message and each odd corner, whatever hypothesis draws.
CORNER_CASES = [
    ("find", b"hello world", b"o w"),
    ("find", b"hello", b"(l)(l)"),
    ("match", b"  trim me  ", b"^%s*(.-)%s*$"),
    ("find", b"a", b"%"),
    ("find", b"a", b"[a"),
    ("find", b"b", b"a%"),  # never reaches the bad '%': no error
    ("find", b"a", b"%f"),
    ("find", b"a", b"%fa"),
    ("match", b"THE (quick) fox", b"%f[%a]%a+"),
    ("match", b"f(a(b)c)d", b"%b()"),
    ("find", b"a", b"%b"),
    ("find", b"a", b"%ba"),
    ("find", b"abcabc", b"(abc)%1"),
    ("find", b"abc", b"%1"),
    ("find", b"aaa", b"(a)%0"),
    ("find", b"aaa", b"()a%1"),
    ("match", b"hello", b"()ll()"),
    ("match", b"a", b"(()"),
    ("find", b"a", b")"),  # no special character: a plain search
    ("match", b"a", b")"),
    ("match", b"a" * 40, b"()" * 33),
    ("find", b"a" * 300, b"a?" * 300),
    ("find", b"a" * 300, b"(a" * 100 + b")" * 100),
    ("find", b"a\0b", b"%z"),
    ("find", b"a\0b", b"[%z]"),
    ("find", b"x", b"[^]"),
    ("find", b"abc", b"b", 10),
    ("find", b"abc", b"", 4),
    ("find", b"abc", b"", 5),
    ("find", b"abc", b"%", 5),  # starts past the end: no error either
    ("find", b"abc", b"c", -1),
    ("find", b"abc", b"a", -10),
    ("find", b"abc", b"b", b"2"),
    ("find", b"abc", b"b", b" 0x2 "),
    ("find", b"abc", b"b", b"x"),
    ("find", b"abc", b"b", b"2.5"),
    ("find", b"abc", b"b", 1.5),
    ("find", b"abc", b"b", 2.0),
    ("find", b"abc", b"b", 2.0**63),
    ("find", 123, 2),
    ("find", 1.5, b"%."),
    ("find", b"a.b", b".", 1, True),
    ("find", None, b"a"),
    ("find", b"a", None),
    ("find", b"a", {}),
    ("find",),
    ("find", b"a"),
    ("match", b"key=value", b"(%w+)=(%w+)"),
    ("gmatch", b"one two three", b"%a+"),
    ("gmatch", b"abc", b""),
    ("gmatch", b"^a^a", b"^a"),
    ("gmatch", b"abc", b")"),
    ("gmatch", b"abcabc", b"b", 3),
    ("gmatch", b"abc", b"b", 10),
    ("gmatch", b"abc", b"(()"),
    ("gmatch", b"abc", b"."),
    ("gsub", b"hello world", b"(o)", b"[%1%0%%]"),
    ("gsub", b"hello", b"l", b"%2"),
    ("gsub", b"hello", b"l", b"%x"),
    ("gsub", b"hello", b"l", b"%"),
    ("gsub", b"hello", b"", b"-"),
    ("gsub", b"hello", b"l*", b"-"),
    ("gsub", b"abc", b"^a", b"x"),
    ("gsub", b"abc", b"(a", b"x"),
    ("gsub", b"abc", b"(a", b"%1"),
    ("gsub", b"abc", b"%w", 7),
    ("gsub", b"abc", b"%w", True),
    ("gsub", b"abc", b"%w"),
    ("gsub", b"abc", b"%w", b"x", 2.5),
    ("gsub", b"abc", b"%w", True, 2.5),  # the count is checked before the replacement
    ("gsub", b"abc", b"()", b"%1"),
    ("gsub", 12345, b"%d", b"%0%0"),
    ("gsub", b"abc", b"%w", b"x", -1),
    ("gsub_function", b"abc", b"%w", 4),
    ("gsub_function", b"abc", b"()", 2),
    ("gsub_table", b"abc", b"%w"),
    ("gsub_table", b"xyz", b"%w"),
]


@pytest.mark.parametrize("case", CORNER_CASES, ids=repr)
def test_corner_cases_match_c(lua: Lua, case: tuple[Any, ...]) -> None:
    assert_same(lua, *case)


def test_errors_point_at_the_scripts_line(lua: Lua) -> None:
    # The harness checks positions against C's already; this one shows what an author sees.
    ok, error = lua.call(lua.safe, "find", b"abc", b"[a")
    assert (ok, error) == (False, b"script:%d: malformed pattern (missing ']')" % caller_line(b"F.find("))
    ok, error = lua.call(lua.safe, "gsub_function", b"abc", b"%w", 4)
    assert (ok, error) == (False, b"script:%d: invalid replacement value (a table)" % caller_line(b"F.gsub("))
    ok, error = lua.call(lua.safe, "gsub", b"abc", b"%w", b"%2")
    assert (ok, error) == (False, b"script:%d: invalid capture index %%2" % caller_line(b"F.gsub("))


def test_many_distinct_patterns_still_match_c(lua: Lua) -> None:
    # More patterns than the wrappers' cache holds: entries are dropped and analysed again.
    for i in range(300):
        pattern = b"%w+" + str(i).encode() + b"(%d*)"
        assert_same(lua, "match", b"item" + str(i).encode() + b"42", pattern)


# Pathological calls -----------------------------------------------------------------------------

# Runs `source` (a function of the wrappers' table) in a coroutine whose count hook raises after a
# fixed number of instructions, as the sandbox's budget hook does. Returns pcall-style results.
UNDER_HOOK = b"""
local F, source, budget = ...
local f = assert(load(source, "=script", "t", { F = F, string = string }))
local co = coroutine.create(f)
local ticks = 0
debug.sethook(co, function()
  ticks = ticks + 1
  if ticks * 1000 >= budget then error("instruction budget exhausted", 0) end
end, "", 1000)
local ok, err = coroutine.resume(co)
return ok, err, ticks * 1000
"""

HOOK_BUDGET = 2_000_000

PATHOLOGICAL = [
    'return F.find(string.rep("a", 30000), string.rep("a*", 8) .. "b")',
    'return F.find(string.rep("word ", 400), string.rep(".-", 6) .. "x")',
    'return F.match("x" .. string.rep(" ", 4000) .. "x", "^%s*(.-)%s*$")',
    'return F.gsub(string.rep("a", 5000), "a*a*b", "")',
    'for _ in F.gmatch(string.rep("(", 20000), "%b()") do end',
    'return F.find(string.rep("a", 40), string.rep("a?", 40) .. string.rep("a", 40))',
    'return F.match(string.rep("ab", 5000), "^(.-)%1(.-)%2c")',
    'return F.find(string.rep("a", 1000000), string.rep("a", 100000) .. "b", 1, true)',
]


@pytest.mark.parametrize("source", PATHOLOGICAL)
def test_pathological_calls_are_stopped_by_the_hook(lua: Lua, source: str) -> None:
    ok, err, spent = lua.runtime.execute(UNDER_HOOK, lua.safe, source.encode(), HOOK_BUDGET)
    assert not ok
    assert err == b"instruction budget exhausted"
    assert spent == HOOK_BUDGET


def test_c_matcher_runs_out_of_the_hooks_reach_and_grows_as_predicted(lua: Lua) -> None:
    # A C call does its whole search between two hook ticks, while the engine's same search is
    # counted as it goes; its instruction count grows with n^3 for "a*a*b", as the bound predicts.
    measure = lua.runtime.eval(b"""function(F, s, p)
      local ticks = 0
      local co = coroutine.create(function() return F.find(s, p) end)
      debug.sethook(co, function() ticks = ticks + 1 end, "", 100)
      assert(coroutine.resume(co))
      return ticks
    end""")
    subject = b"a" * 60
    assert measure(lua.c, subject, b"a*a*a*b") == 0
    small, large = (measure(lua.engine, b"a" * n, b"a*a*b") for n in (40, 80))
    assert 6 < large / small < 9


# Routing ----------------------------------------------------------------------------------------


@dataclass
class Counted:
    """The wrappers over counting stand-ins for the C functions and the engine loader."""

    lua: Lua
    safe: Any
    counts: Any

    def calls(self) -> dict[str, int]:
        return {key.decode(): value for key, value in self.counts.items()}


ROUTING_SETUP = b"""
local C, engine_factory, patterns_factory = ...
local counts = { c = 0, engine = 0, loads = 0 }
local counted_c = {}
for name, f in pairs(C) do
  counted_c[name] = function(...) counts.c = counts.c + 1; return f(...) end
end
local function load_engine()
  counts.loads = counts.loads + 1
  return function()
    local real = engine_factory(C) -- uncounted: the engine's own C calls are not a route
    local counted = {}
    for name, f in pairs(real) do
      counted[name] = function(...) counts.engine = counts.engine + 1; return f(...) end
    end
    return counted
  end
end
return patterns_factory(counted_c, load_engine), counts
"""


@pytest.fixture
def counted(lua: Lua) -> Counted:
    engine_factory = lua.runtime.execute(read_chunk("pattern_engine.lua"))
    patterns_factory = lua.runtime.execute(read_chunk("patterns.lua"))
    safe, counts = lua.runtime.execute(ROUTING_SETUP, lua.c, engine_factory, patterns_factory)
    return Counted(lua, safe, counts)


def message(length: int) -> bytes:
    text = b"Hey everyone, the rules are at https://example.com/rules?page=2 - read them! 42 times. "
    return (text * (length // len(text) + 1))[:length]


TRIM = b"^%s*(.-)%s*$"
# Calls the C functions must keep: the common shapes, on a 2000-character message.
STAYS_IN_C = [
    ("find", message(2000), b"badword", 1, True),
    ("match", b"!" + message(1999), b"^!%w+"),
    ("find", message(2000), b"%d+"),
    ("match", message(2000), b"https?://[%w%.%-]+"),
    ("match", message(2000), b"(%S+)"),
    ("gsub", message(2000), b"%s+", b" "),
    ("gsub", message(2000), b"(%w+)", b"<%1>"),
    ("gmatch", message(2000), b"%a+"),
    ("gsub_function", message(2000), b"%w+", 2),
    # Trim is quadratic: on "x", 2000 spaces, "x" C needs about 4 million steps (16 ms measured).
    # The bound keeps it in C up to about 500 characters, which most messages are.
    ("match", message(400), TRIM),
]
GOES_TO_ENGINE = [
    ("match", message(2000), TRIM),
    ("find", b"a" * 100, b"a*a*b"),
    ("find", message(2000), b".-.-x"),
    ("find", b"a" * 16, b"a?" * 16 + b"a" * 16),
    ("gmatch", message(2000), b"^Hey"),  # gmatch reads '^' as a character: never analysed
    ("find", b"a" * 200_000, b"needle", 1, True),
    ("find", 12345, 3),  # numbers are converted by the engine, as C would
    ("find", b"abc", b"[a"),  # C would raise from inside itself, at the wrong line
]


@pytest.mark.parametrize("case", STAYS_IN_C, ids=lambda case: f"{case[0]} {case[2]!r}")
def test_common_calls_stay_in_c(counted: Counted, case: tuple[Any, ...]) -> None:
    assert counted.lua.call(counted.safe, *case) == counted.lua.call(counted.lua.c, *case)
    calls = counted.calls()
    assert calls["c"] >= 1
    assert calls["engine"] == 0
    assert calls["loads"] == 0  # the engine was not even compiled


@pytest.mark.parametrize("case", GOES_TO_ENGINE, ids=lambda case: f"{case[0]} {case[2]!r:.30}")
def test_risky_calls_go_to_the_engine(counted: Counted, case: tuple[Any, ...]) -> None:
    assert counted.lua.call(counted.safe, *case) == counted.lua.call(counted.lua.c, *case)
    assert counted.calls() == {"c": 0, "engine": 1, "loads": 1}


def test_engine_is_compiled_once(counted: Counted) -> None:
    for _ in range(3):
        counted.lua.call(counted.safe, "match", message(2000), TRIM)
    assert counted.calls() == {"c": 0, "engine": 3, "loads": 1}
