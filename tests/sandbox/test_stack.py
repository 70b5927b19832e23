"""Stack attacks: overflows of the Lua stack and of the C stack, alone and near the memory limit.

Deep Lua recursion grows a coroutine's stack until Lua refuses (or the heap is full first); C
recursion (a gsub callback calling gsub, metamethods calling themselves through C) ends with "C stack
overflow" after LUAI_MAXCCALLS levels. Either must end the script with an error on its line, keep the
VM serving, and never reach the host as an exception: the kernel reads the failed coroutine's stack
to find the author's line, even when that stack or the heap is exhausted. The child process of
``attack.py`` turns a crash into a failed test.
"""

from __future__ import annotations

import pytest

from tests.sandbox.attack import Attack, Case, assert_stopped, attack, handler, run_attacks

#: Fills the heap from a coroutine, then frees a little: what follows runs near the memory limit.
NEAR_FULL = (
    "local keep = {} coroutine.resume(coroutine.create(function() while true do keep[#keep + 1] = {} end end)) "
    "for i = 1, 2000 do keep[#keep] = nil end "
)

#: Handler bodies (line 2) that overflow a stack, with the error kind (or kinds) and the runtime
#: message they must end in.
OVERFLOWS: dict[str, tuple[str, str | tuple[str, ...], str | None]] = {
    "gsub callbacks calling gsub": (
        "local function g(s) return (s:gsub('.', g)) end g('ab')",
        "runtime",
        "C stack overflow",
    ),
    "__index function indexing itself": (
        "local t t = setmetatable({}, { __index = function(_, k) return t[k] end }) return t.x",
        "runtime",
        "C stack overflow",
    ),
    "__index chain looping through tables": (
        "local t = {} setmetatable(t, { __index = t }) return t.x",
        "runtime",
        "'__index' chain too long; possible loop",
    ),
    "__tostring calling tostring on itself": (
        "local t t = setmetatable({}, { __tostring = function(x) return tostring(x) end }) print(t)",
        "runtime",
        "C stack overflow",
    ),
    "__concat concatenating itself": (
        "local t t = setmetatable({}, { __concat = function(a, b) return a .. b end }) return t .. t",
        "runtime",
        "C stack overflow",
    ),
    "__eq comparing itself": (
        "local mt = {} mt.__eq = function(a, b) return a == b end return setmetatable({}, mt) == setmetatable({}, mt)",
        "runtime",
        "C stack overflow",
    ),
    "table.sort comparator sorting again": (
        "local function s() table.sort({ 3, 2, 1 }, function(a, b) s() return a < b end) end s()",
        "runtime",
        "C stack overflow",
    ),
    "recursion through coroutine.wrap": (
        "local function f() return coroutine.wrap(f)() end f()",
        "runtime",
        "C stack overflow",
    ),
    "table.unpack of a million values": (
        "print(select('#', table.unpack({}, 1, 1e6)))",
        "runtime",
        "too many results to unpack (at most 8000 values)",
    ),
    "string.byte of 2 MB at once": (
        "print(#{ string.byte(string.rep('x', 2e6), 1, -1) })",
        "runtime",
        "string slice too long (string.byte returns at most 8000 values)",
    ),
    "deep Lua recursion under pcall": (
        "local function f(n) return 1 + f(n + 1) end pcall(f, 1) error('not reached')",
        "memory_limit",
        None,
    ),
    "deep Lua recursion under xpcall": (
        "local function f(n) return 1 + f(n + 1) end xpcall(f, function(e) return 'h:' .. tostring(e) end, 1)",
        "memory_limit",
        None,
    ),
    "xpcall of itself as body and handler": (
        "local function f() return xpcall(f, f) end f()",
        "memory_limit",
        None,
    ),
    "near the memory limit: deep Lua recursion": (
        NEAR_FULL + "local function f(n) return 1 + f(n + 1) end f(1)",
        "memory_limit",
        None,
    ),
    "near the memory limit: gsub callbacks calling gsub": (
        NEAR_FULL + "local function g(s) return (s:gsub('.', g)) end g('ab')",
        "memory_limit",
        None,
    ),
    "near the memory limit: recursion through coroutine.wrap": (
        NEAR_FULL + "local function f() return coroutine.wrap(f)() end f()",
        "memory_limit",
        None,
    ),
    "near the memory limit: deep recursion under pcall, again and again": (
        NEAR_FULL + "local function f(n) return 1 + f(n + 1) end for i = 1, 100 do pcall(f, 1) end",
        "memory_limit",
        None,
    ),
    "near the memory limit: __tostring calling tostring on itself": (
        NEAR_FULL
        + "local t t = setmetatable({}, { __tostring = function(x) return tostring(x) end }) print(t)",
        ("runtime", "memory_limit"),  # the overflow's message may itself not fit in the heap
        "C stack overflow",
    ),
}

#: Handler bodies (line 2) whose overflow the script catches: the handler goes on and prints.
CAUGHT = {
    "gsub overflow caught by pcall": (
        "local function g(s) return (s:gsub('.', g)) end print(pcall(g, 'ab'))",
        "false\tC stack overflow",
    ),
    "coroutine.resume overflow caught at each level": (
        "local function f() local ok, e = coroutine.resume(coroutine.create(f)) if not ok then print(e) end end f()",
        "C stack overflow",
    ),
    "recursion that catches its own overflow at each level": (
        "local function f(n) local ok = pcall(f, n + 1) return n end print(f(1))",
        "1",
    ),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, Attack]:
    cases = {name: Case(handler(body), events=2) for name, (body, _, _) in OVERFLOWS.items()}
    cases |= {name: Case(handler(body)) for name, (body, _) in CAUGHT.items()}
    return run_attacks(cases)


@pytest.mark.parametrize("name", list(OVERFLOWS))
def test_an_overflow_ends_the_script_with_its_error(runs: dict[str, Attack], name: str) -> None:
    _, kinds, message = OVERFLOWS[name]
    result = runs[name]
    result.check_witness()
    for event in result.events:
        error = event.error_of("attack")
        assert error is not None and error.kind in kinds
        assert_stopped(error, error.kind)
        if error.kind == "runtime":
            assert error.message == message
        # The line, when the kernel can still read the overflowed stack.
        assert error.line in (2, None)


@pytest.mark.parametrize("name", list(CAUGHT))
def test_a_caught_overflow_lets_the_handler_go_on(runs: dict[str, Attack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    assert result.first.errors == []
    assert result.first.texts()[0] == CAUGHT[name][1]


@pytest.mark.parametrize(
    "body",
    [
        "local function f(n) return 1 + f(n + 1) end f(1)",
        "local s = string.format(string.rep('%99d', 1e5), table.unpack(table.create(1e5, 1)))",
    ],
    ids=["deep Lua recursion", "huge format after a huge unpack"],
)
def test_an_overflow_with_a_full_heap_is_reported_not_raised(body: str) -> None:
    # With the heap at its ceiling, the kernel's debug.getinfo on the dead coroutine could not grow
    # its stack and raised 'stack overflow' in kernel code: GuildVM.dispatch raised a LuaError.
    result = attack(handler(body))
    assert result.error is not None and result.error.kind in ("runtime", "memory_limit")


@pytest.mark.parametrize(
    "annotation",
    ["{" * 500 + "}" * 500, "(" * 500 + "number" + ")" * 500, "() -> " * 500 + "number"],
    ids=["tables", "parentheses", "functions"],
)
def test_deeply_nested_type_annotations_are_a_syntax_error(annotation: str) -> None:
    # The Luau layer parses types by recursion in Python: without a bound, 500 levels (1 KB of
    # source) raised RecursionError out of GuildVM(...).
    result = attack(f"type T = {annotation}\nreturn {{}}")
    error = result.load_error
    assert (error.kind, error.line) == ("syntax", 1)
    assert error.message == "Exceeded allowed recursion depth; simplify your type to make it compile"
