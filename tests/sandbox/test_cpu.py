"""CPU attacks: loops the sandbox must end with ``time_limit``, wherever the guest hides them.

The kernel bounds guest CPU with a count hook on every coroutine guest code runs in; once the budget
is spent the hook fires on every instruction, so that a pcall, an xpcall handler or a coroutine
that catches the stop gets it again at once. These scripts hide a loop everywhere a hook might not
reach: coroutines at any depth, protected calls and their handlers, metamethods called from C,
comparators and callbacks of C library functions, finalizers, the top level of a script.
"""

from __future__ import annotations

import pytest

from tests.sandbox.attack import Attack, Case, assert_stopped, attack, handler, run_attacks

LOOP = "while true do end"

#: Handler bodies (on line 2 of their script) that never end.
ENDLESS_HANDLERS = {
    "while loop": LOOP,
    "repeat loop": "repeat until false",
    "numeric for up to infinity": "for i = 1, math.huge do end",
    "endless tail calls": "local function f() return f() end return f()",
    "loop in a coroutine": f"coroutine.wrap(function() {LOOP} end)()",
    "loop 50 coroutines deep": (
        f"local function nest(n) if n == 0 then {LOOP} end coroutine.wrap(nest)(n - 1) end nest(50)"
    ),
    "coroutine ping-pong": (
        "local co = coroutine.wrap(function() while true do coroutine.yield() end end) while true do co() end"
    ),
    "resuming a stopped coroutine again and again": (
        f"local co = coroutine.create(function() {LOOP} end) while true do coroutine.resume(co) end"
    ),
    "fresh looping coroutines in a loop": (
        f"while true do coroutine.resume(coroutine.create(function() {LOOP} end)) end"
    ),
    "loop under pcall": f"pcall(function() {LOOP} end)",
    "pcall of a loop, in a loop": f"while true do pcall(function() {LOOP} end) end",
    "loop under xpcall": f"xpcall(function() {LOOP} end, function(e) return e end)",
    "loop in an xpcall message handler": f"xpcall(error, function(e) {LOOP} end)",
    "xpcall handlers that fail, in a loop": "while true do xpcall(error, function(e) error(e) end) end",
    "loop after catching the stop with pcall": f"for i = 1, 3 do pcall(function() {LOOP} end) end {LOOP}",
    "loop after catching the stop in an xpcall handler": (
        f"local n = 0 xpcall(function() {LOOP} end, function() n += 1 end) while true do n += 1 end"
    ),
    "loop after catching the stop with coroutine.resume": (
        f"coroutine.resume(coroutine.create(function() {LOOP} end)) {LOOP}"
    ),
    "__index": f"local t = setmetatable({{}}, {{ __index = function() {LOOP} end }}) return t.x",
    "__newindex": f"local t = setmetatable({{}}, {{ __newindex = function() {LOOP} end }}) t.x = 1",
    "__eq": f"local mt = {{ __eq = function() {LOOP} end }} return setmetatable({{}}, mt) == setmetatable({{}}, mt)",
    "__lt": f"local mt = {{ __lt = function() {LOOP} end }} return setmetatable({{}}, mt) < setmetatable({{}}, mt)",
    "__le": f"local mt = {{ __le = function() {LOOP} end }} return setmetatable({{}}, mt) <= setmetatable({{}}, mt)",
    "__concat": f"local t = setmetatable({{}}, {{ __concat = function() {LOOP} end }}) return t .. 'x'",
    "__len": f"local t = setmetatable({{}}, {{ __len = function() {LOOP} end }}) return #t",
    "__call": f"local t = setmetatable({{}}, {{ __call = function() {LOOP} end }}) t()",
    "__unm": f"local t = setmetatable({{}}, {{ __unm = function() {LOOP} end }}) return -t",
    "__add": f"local t = setmetatable({{}}, {{ __add = function() {LOOP} end }}) return t + 1",
    "__mod (Luau's % goes through a helper)": f"local t = setmetatable({{}}, {{ __mod = function() {LOOP} end }}) return t % 1",
    "__iter": f"for k in setmetatable({{}}, {{ __iter = function() {LOOP} end }}) do end",
    "__tostring via tostring": f"tostring(setmetatable({{}}, {{ __tostring = function() {LOOP} end }}))",
    "__tostring via print": f"print(setmetatable({{}}, {{ __tostring = function() {LOOP} end }}))",
    "__tostring via string.format": (
        f"string.format('%s', setmetatable({{}}, {{ __tostring = function() {LOOP} end }}))"
    ),
    "__tostring via string interpolation": (
        f"local t = setmetatable({{}}, {{ __tostring = function() {LOOP} end }}) print(`{{t}}`)"
    ),
    "__index via table.concat": f"table.concat(setmetatable({{}}, {{ __index = function() {LOOP} end }}), '', 1, 3)",
    "table.sort comparator": f"local t = {{}} for i = 1, 100 do t[i] = i end table.sort(t, function() {LOOP} end)",
    "__lt called by table.sort": (
        f"local mt = {{ __lt = function() {LOOP} end }} table.sort({{ setmetatable({{}}, mt), setmetatable({{}}, mt) }})"
    ),
    "gsub callback": f"('abc'):gsub('.', function() {LOOP} end)",
    "__index of a gsub replacement table": f"('abc'):gsub('.', setmetatable({{}}, {{ __index = function() {LOOP} end }}))",
    "gsub callback on the pattern engine's path": (
        f"string.rep('a', 3000):gsub('a-a-a-a-(a)', function() {LOOP} end)"
    ),
    "recursion through coroutine.wrap that catches the C stack overflow": (
        "local function f() pcall(coroutine.wrap(f)) f() end f()"
    ),
    "xpcall handlers that start xpcalls": "local function h(e) return xpcall(error, h, e) end xpcall(error, h, 'x')",
    "recursion through coroutine.wrap that catches the C stack overflow, with a call on the way": (
        "local function g() return 1 end local function f() local _ = g() pcall(coroutine.wrap(f)) f() end f()"
    ),
    "recursion through coroutine.wrap that catches the C stack overflow, reading an unset global": (
        "local function f() local _ = unset_global pcall(coroutine.wrap(f)) f() end f()"
    ),
}

#: Top-level code (line 1) that never ends: it runs when the script is loaded, under the same budget.
ENDLESS_TOP_LEVELS = {
    "top-level loop": f"{LOOP} return {{}}",
    "top-level loop in a coroutine": f"coroutine.wrap(function() {LOOP} end)() return {{}}",
    "top-level loop after catching the stop": f"pcall(function() {LOOP} end) {LOOP} return {{}}",
}


@pytest.fixture(scope="module")
def runs() -> dict[str, Attack]:
    cases = {name: Case(handler(body)) for name, body in ENDLESS_HANDLERS.items()}
    cases |= {name: Case(source) for name, source in ENDLESS_TOP_LEVELS.items()}
    cases["a coroutine parked in one event loops in the next"] = Case(
        "local co\n"
        "return { message = function()\n"
        "  if co then coroutine.resume(co) return end\n"
        f"  co = coroutine.create(function() coroutine.yield() {LOOP} end)\n"
        "  coroutine.resume(co)\n"
        "end }",
        events=2,
    )
    return run_attacks(cases)


@pytest.mark.parametrize("name", list(ENDLESS_HANDLERS))
def test_an_endless_handler_ends_in_the_time_limit_on_its_line(runs: dict[str, Attack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    assert_stopped(result.error, "time_limit")
    assert result.error.line == 2


@pytest.mark.parametrize("name", list(ENDLESS_TOP_LEVELS))
def test_an_endless_top_level_ends_in_the_time_limit_at_load(runs: dict[str, Attack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    assert_stopped(result.load_error, "time_limit")
    assert result.load_error.line == 1
    assert result.load.handled_events == ["member_join"]


def test_a_coroutine_parked_in_one_event_is_stopped_when_resumed_in_the_next(runs: dict[str, Attack]) -> None:
    result = runs["a coroutine parked in one event loops in the next"]
    result.check_witness()
    first, second = result.events
    assert first.errors == []
    assert_stopped(second.error_of("attack"), "time_limit")
    # The loop's line, or the line that resumed the coroutine running it: both are the author's.
    assert second.error_of("attack").line in (3, 4)


@pytest.mark.parametrize("field", ["__gc", "__close"])
def test_finalizers_and_close_handlers_are_refused(field: str) -> None:
    # Both run with hooks off: a loop in one could never be stopped.
    result = attack(f"setmetatable({{}}, {{ {field} = function() {LOOP} end }})\nreturn {{}}")
    error = result.load_error
    assert (error.kind, error.line) == ("runtime", 1)
    assert error.message == "__gc and __close metamethods are not available in Warden scripts"


@pytest.mark.parametrize("function", ["clone", "freeze"])
def test_a_finalizer_added_after_setmetatable_cannot_reach_the_gc_through_the_table_library(
    function: str,
) -> None:
    # table.clone and table.freeze set metatables with the real setmetatable: a __gc added after
    # the guest's setmetatable checked the metatable would make their result finalizable, and the
    # finalizer would loop with hooks off when the table is collected (here, during the load).
    result = attack(
        "local mt = {}\n"
        "local t = setmetatable({}, mt)\n"
        f"mt.__gc = function() {LOOP} end\n"
        f"table.{function}(t)\n"
        "t = nil for i = 1, 1e5 do local garbage = {} end\n"
        "return { message = function() end }"
    )
    error = result.load_error
    assert (error.kind, error.line) == ("runtime", 4)
    assert error.message == (
        f"invalid argument #1 to '{function}' (table's metatable has a __gc or __close metamethod)"
    )
