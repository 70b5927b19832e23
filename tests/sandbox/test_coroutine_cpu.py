"""CPU across all of an event's threads: trees of coroutines and task threads end in the time limit.

Lua 5.4 counts a count hook's instructions per thread, so a tree of coroutines that each stay
under the hook's period never meets the hook: the issue's ``f(24)`` ran 42 s against a 100 ms
budget. The kernel counts every switch between guest threads (threads.lua) and reads the clock
every SWITCH_PERIOD of them, so the budget holds whatever the tree's shape: deep, wide, made with
wrap, create and resume or the task library, resumed from metamethods, from C functions that call
back into Lua, from protected calls, with errors and yields on the way.

Every case runs twice, in children (``attack.py``): with the preemption watchdog, as the bot runs,
and without it, where the switch count alone must bound the tree. Each must end in ``time_limit``
on its line within the child's CPU allowance, and the same VM must still serve the next event and
the witness.
"""

from __future__ import annotations

import pytest

from lua_runtime.sandbox import HOOK_PERIOD
from tests.sandbox.attack import Attack, Case, assert_stopped, handler, run_attacks
from tests.sandbox.test_task_attacks import TaskAttack, run_task_attacks

#: A node of the issue's tree: two fresh coroutine.wrap children per node, a few instructions each.
WRAP_TREE = "local function f(d) if d > 0 then coroutine.wrap(f)(d - 1) coroutine.wrap(f)(d - 1) end end"

#: A loop of just under one hook period of instructions (a numeric for costs one per iteration).
UNDER_A_PERIOD = f"for _ = 1, {HOOK_PERIOD - 100} do end"

#: Handler bodies (line 2, one line each) whose threads, in total, never end.
TREES = {
    "the issue's tree of coroutine.wrap": f"{WRAP_TREE} f(24)",
    "a tree of coroutine.create and coroutine.resume": (
        "local function f(d) if d > 0 then coroutine.resume(coroutine.create(f), d - 1) "
        "coroutine.resume(coroutine.create(f), d - 1) end end f(24)"
    ),
    "a wide tree, a thousand children per node": (
        "local function f(d) if d > 0 then for _ = 1, 1000 do coroutine.wrap(f)(d - 1) end end end f(5)"
    ),
    "a tree of coroutines that each run just under the hook's period": (
        f"local function f(d) {UNDER_A_PERIOD} if d > 0 then coroutine.wrap(f)(d - 1) "
        "coroutine.wrap(f)(d - 1) end end f(24)"
    ),
    "a chain 150 coroutines deep, built again and again": (
        "local function f(d) if d > 0 then coroutine.wrap(f)(d - 1) end end while true do f(150) end"
    ),
    "a chain of coroutines that each run just under the period": (
        f"local function f(d) {UNDER_A_PERIOD} if d > 0 then coroutine.wrap(f)(d - 1) end end "
        "while true do f(100) end"
    ),
    "a task.spawn tree": (
        "local function f(d) if d > 0 then task.spawn(f, d - 1) task.spawn(f, d - 1) end end f(24)"
    ),
    "a task.spawn tree of threads that each run just under the period": (
        f"local function f(d) {UNDER_A_PERIOD} if d > 0 then task.spawn(f, d - 1) task.spawn(f, d - 1) end end f(24)"
    ),
    "a deferred thread that grows a tree": f"{WRAP_TREE} task.defer(f, 24)",
    "a tree mixing task.spawn, wrap and create": (
        "local function f(d) if d > 0 then task.spawn(function() coroutine.wrap(f)(d - 1) end) "
        "coroutine.resume(coroutine.create(f), d - 1) end end f(24)"
    ),
    "a tree resumed from __index": (
        "local t t = setmetatable({}, { __index = function(_, d) if d > 0 then "
        "coroutine.wrap(function() return t[d - 1] end)() coroutine.wrap(function() return t[d - 1] end)() "
        "end return 0 end }) local _ = t[24]"
    ),
    "a tree resumed from __lt": (
        "local mt = {} local function node(d) return setmetatable({ d = d }, mt) end "
        "mt.__lt = function(a, b) if a.d > 0 then coroutine.wrap(function() return node(a.d - 1) < b end)() "
        "coroutine.wrap(function() return node(a.d - 1) < b end)() end return false end "
        "local _ = node(24) < node(0)"
    ),
    "a tree resumed from __concat": (
        "local mt = {} local function node(d) return setmetatable({ d = d }, mt) end "
        "mt.__concat = function(a, b) if a.d > 0 then coroutine.wrap(function() return node(a.d - 1) .. b end)() "
        "coroutine.wrap(function() return node(a.d - 1) .. b end)() end return '' end "
        "local _ = node(24) .. 'x'"
    ),
    "a tree resumed from __eq": (
        "local mt = {} local function node(d) return setmetatable({ d = d }, mt) end "
        "mt.__eq = function(a, b) if a.d > 0 then coroutine.wrap(function() return node(a.d - 1) == b end)() "
        "coroutine.wrap(function() return node(a.d - 1) == b end)() end return false end "
        "local _ = node(24) == node(0)"
    ),
    "a tree resumed from __call": (
        "local t t = setmetatable({}, { __call = function(_, d) if d > 0 then "
        "coroutine.wrap(function() t(d - 1) end)() coroutine.wrap(function() t(d - 1) end)() end end }) t(24)"
    ),
    "a tree grown by a table.sort comparator": (
        f"{WRAP_TREE} table.sort({{ 3, 2, 1 }}, function(a, b) f(24) return a < b end)"
    ),
    "a tree grown by a gsub replacement function": f"{WRAP_TREE} string.gsub('abc', '.', function() f(24) end)",
    "a tree under pcall": f"{WRAP_TREE} pcall(f, 24)",
    "a tree in an xpcall message handler": f"{WRAP_TREE} xpcall(error, function() f(24) end)",
    "a tree of generic for loops over coroutine.wrap": (
        "local function f(d) if d > 0 then for _ in coroutine.wrap(function() f(d - 1) coroutine.yield(1) "
        "f(d - 1) end) do end end end f(24)"
    ),
    "fresh generators in an endless loop": (
        "while true do for _ in coroutine.wrap(function() coroutine.yield(1) end) do end end"
    ),
    "a tree whose leaves fail, each failure caught": (
        "local function f(d) if d > 0 then pcall(coroutine.wrap(f), d - 1) pcall(coroutine.wrap(f), d - 1) "
        "else error('leaf') end end f(24)"
    ),
    "a tree that yields across pcall": (
        "local function f(d) if d > 0 then local co = coroutine.wrap(function() pcall(coroutine.yield) "
        "f(d - 1) f(d - 1) end) co() co() end end f(24)"
    ),
    "a tree that asks running, isyieldable and status, and closes what it made": (
        "local function f(d) local _ = coroutine.running() local _ = coroutine.isyieldable() if d > 0 then "
        "local co = coroutine.create(f) coroutine.resume(co, d - 1) local _ = coroutine.status(co) "
        "coroutine.close(co) coroutine.resume(coroutine.create(f), d - 1) end end f(24)"
    ),
}

#: Top-level code (line 1): it runs when the VM is built, under the same budget.
TOP_LEVEL = {
    "the issue's tree at the top level": f"{WRAP_TREE} f(24) return {{}}",
}


@pytest.fixture(scope="module", params=[True, False], ids=["with preemption", "switch count alone"])
def runs(request: pytest.FixtureRequest) -> dict[str, Attack]:
    # Two events each: the VM that stopped the tree stops it again, then serves the witness.
    cases = {name: Case(handler(body), events=2) for name, body in TREES.items()}
    cases |= {name: Case(source) for name, source in TOP_LEVEL.items()}
    return run_attacks(cases, preemption=request.param)


@pytest.mark.parametrize("name", list(TREES))
def test_a_tree_of_threads_ends_in_the_time_limit(runs: dict[str, Attack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    for event in result.events:
        error = event.error_of("attack")
        assert_stopped(error, "time_limit")
        assert error.line == 2
        assert [e.script for e in event.errors] == ["attack"]  # one error, nothing else reported


@pytest.mark.parametrize("name", list(TOP_LEVEL))
def test_a_tree_at_the_top_level_ends_in_the_time_limit_at_load(runs: dict[str, Attack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    assert_stopped(result.load_error, "time_limit")
    assert result.load_error.line == 1


#: Trees grown in a timer's resumption (a turn of its own, with its own budget), as handler bodies.
TIMER_TREES = {
    "a tree in a delayed thread": f"{WRAP_TREE} task.delay(0, f, 24)",
    "a task.spawn tree in a delayed thread": (
        "local function f(d) if d > 0 then task.spawn(f, d - 1) task.spawn(f, d - 1) end end task.delay(0, f, 24)"
    ),
    "a tree after a wait": f"{WRAP_TREE} task.wait(0) f(24)",
}


@pytest.fixture(scope="module")
def timer_runs() -> dict[str, TaskAttack]:
    return run_task_attacks({name: handler(body) for name, body in TIMER_TREES.items()})


@pytest.mark.parametrize("name", list(TIMER_TREES))
def test_a_tree_in_a_timer_ends_in_the_time_limit(timer_runs: dict[str, TaskAttack], name: str) -> None:
    result = timer_runs[name]
    result.check_witness()
    assert result.event.errors == []
    [error] = result.attack_errors()
    assert_stopped(error, "time_limit")
    assert error.line == 2
