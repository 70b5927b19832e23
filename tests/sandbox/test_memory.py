"""Memory attacks: bombs the sandbox must end with ``memory_limit``, and heaps it must survive.

lupa enforces a heap ceiling per runtime; the host raises it while it works and lowers it while
guest code runs, because a host push into a full heap is an unprotected Lua error, and lupa answers
those by aborting the whole process. So besides ending every bomb with the right error, the VM must
survive a guest that keeps its heap full on purpose: the next event's host work must not abort.
All of it runs in a child process (``attack.py``): an abort fails the test instead of pytest.
"""

from __future__ import annotations

import pytest

from lua_runtime.events import sample_payload
from tests.sandbox.attack import (
    CHILD_CPU_SECONDS,
    SMALL,
    WITNESS_EVENT,
    WITNESS_SOURCE,
    Attack,
    Case,
    assert_stopped,
    attack,
    handler,
    run_attacks,
    run_child,
)

#: Fills the heap from a coroutine, whose resume returns the memory error instead of raising it.
FILL_QUIETLY = "coroutine.resume(coroutine.create(function() while true do keep[#keep + 1] = {} end end))"

#: Handler bodies (line 2) that allocate without end.
BOMBS = {
    "table of tables": "local t = {} while true do t[#t + 1] = {} end",
    "a gigabyte from string.rep": "local s = string.rep('x', 2^30)",
    "doubling a string by concatenation": "local s = 'x' while true do s = s .. s end",
    "table of long strings": "local t = {} while true do t[#t + 1] = string.rep('x', 1e4) .. #t end",
    "gsub growth": "local s = string.rep('x', 1e5):gsub('.', string.rep('%0', 100))",
    "table.concat of a big table": "local t = {} for i = 1, 1e6 do t[i] = 'xxxxxxxxxxxxxxxx' end local s = table.concat(t)",
    "table.create preallocation": "local t = table.create(1e8, true)",
    "deep nesting": "local t = {} while true do t = { t } end",
    "bomb in a coroutine": "coroutine.wrap(function() local t = {} while true do t[#t + 1] = {} end end)()",
    "bomb 20 coroutines deep": (
        "local function nest(n) if n == 0 then local t = {} while true do t[#t + 1] = {} end end "
        "coroutine.wrap(nest)(n - 1) end nest(20)"
    ),
    "bomb under pcall, retried": "while true do pcall(function() local t = {} while true do t[#t + 1] = {} end end) end",
    "bomb in an xpcall handler": "xpcall(error, function() local t = {} while true do t[#t + 1] = {} end end)",
    "a 3 MB error message": "error(string.rep('e', 3e6))",
}


@pytest.fixture(scope="module")
def runs() -> dict[str, Attack]:
    cases = {name: Case(handler(body), events=2) for name, body in BOMBS.items()}
    cases["top-level bomb"] = Case("keep = {} while true do keep[#keep + 1] = {} end return {}")
    cases["pcall-guarded loop that keeps what it got"] = Case(
        "local keep = {}\n"
        "return { message = function()\n"
        "  while true do pcall(function() keep[#keep + 1] = string.rep('x', 1e4) .. #keep end) end\n"
        "end }",
        events=3,
    )
    cases["full heap, then the pattern engine is loaded"] = Case(
        "keep = {}\n"
        "return { message = function()\n"
        f"  {FILL_QUIETLY}\n"
        "  return string.rep('a', 100):find(string.rep('a*', 8) .. 'b')\n"
        "end }",
        events=2,
    )
    cases["full heap, then @warden/discord is loaded"] = Case(
        "keep = {}\n"
        "return { message = function(m)\n"
        f"  {FILL_QUIETLY}\n"
        "  require('@warden/discord').send(m.channel_id, 'hello')\n"
        "end }",
        events=2,
    )
    return run_attacks(cases)


@pytest.mark.parametrize("name", list(BOMBS))
def test_a_memory_bomb_ends_in_the_memory_limit_every_time(runs: dict[str, Attack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    for event in result.events:
        error = event.error_of("attack")
        # gsub builds its result inside C: on a slow machine its CPU check may stop it first.
        assert_stopped(
            error, "time_limit" if name == "gsub growth" and error.kind == "time_limit" else "memory_limit"
        )
        # The line of the allocation, or none when the kernel's own bookkeeping ran out of room.
        assert error.line in (2, None)


def test_a_top_level_bomb_fails_the_load_and_the_vm_serves_the_others(runs: dict[str, Attack]) -> None:
    result = runs["top-level bomb"]
    result.check_witness()
    assert_stopped(result.load_error, "memory_limit")
    assert result.load.handled_events == ["member_join"]


def test_a_pcall_guarded_allocation_loop_gets_a_fresh_vm_for_the_next_events(runs: dict[str, Attack]) -> None:
    # lupa fact 1: the heap is full when the next event pushes its payload; it must not abort.
    result = runs["pcall-guarded loop that keeps what it got"]
    result.check_witness()
    for event in result.events:
        assert_stopped(event.error_of("attack"), "memory_limit")
    assert not result.events[0].trusted
    assert result.events[-1].rebuilds == 2
    assert result.witness.rebuilds == 3


@pytest.mark.parametrize(
    "name", ["full heap, then the pattern engine is loaded", "full heap, then @warden/discord is loaded"]
)
def test_a_host_module_loaded_into_a_full_heap_fails_the_script_not_the_process(
    runs: dict[str, Attack], name: str
) -> None:
    # The host lifts the ceiling to load the module's bytecode, then lowers it again: the load
    # either fits (the dead coroutine's garbage is collected) or fails the script, never the process.
    for event in runs[name].events:
        assert event.exception is None
        assert [error.kind for error in event.errors] in ([], ["memory_limit"])


def test_a_heap_kept_full_to_the_byte_survives_every_host_push() -> None:
    # Each event fills the heap completely from a coroutine (whose resume hides the memory error),
    # then frees a few more bytes than the last time and returns normally with output: somewhere
    # in these events the host's pushes (payload, results) meet a heap within bytes of its ceiling.
    brim = (
        "local keep, n_event = {}, 0\n"
        "local function tables() while true do keep[#keep + 1] = {} end end\n"
        "local function strings() local i = 0 while true do i += 1 keep[#keep + 1] = tostring(i) end end\n"
        "return { message = function(m)\n"
        "  n_event += 1\n"
        "  keep = {}\n"
        "  coroutine.resume(coroutine.create(tables))\n"
        "  coroutine.resume(coroutine.create(strings))\n"
        "  for i = 1, n_event * 3 do keep[#keep] = nil end\n"
        "  print('x')\n"
        "end }"
    )
    payload = sample_payload("message")
    payload["content"] = "y" * 4000
    payload["mentions"] = [{"id": str(10**18 + i), "username": f"user{i}"} for i in range(100)]
    steps = [(1, "message", payload)] * 40 + [(1, WITNESS_EVENT, None)]
    # Each event may spend its whole budget filling the heap: the allowance counts them all, and
    # still fails the test at once if one event escapes its budget.
    allowance = CHILD_CPU_SECONDS + len(steps) * SMALL.cpu_ms_per_event / 1000
    run = run_child({1: [("brim", brim), ("witness", WITNESS_SOURCE)]}, steps, cpu_seconds=allowance)
    assert len(run.events) == 41
    assert all(event.exception is None for event in run.events)
    assert all(error.kind == "memory_limit" for event in run.events for error in event.errors)


def test_a_heap_filled_behind_coroutine_resume_is_blamed_on_its_script() -> None:
    # coroutine.resume used to hand 'not enough memory' back as a value: the script that filled the
    # heap went on unreported in a trusted VM, and the next script to allocate was blamed.
    result = attack(f"keep = {{}}\nreturn {{ message = function()\n  {FILL_QUIETLY}\nend }}")
    assert_stopped(result.first.error_of("attack"), "memory_limit")


def test_a_heap_filled_at_load_does_not_keep_the_next_script_from_loading() -> None:
    # The next script's compile used to run out of memory and be reported as its 'syntax' error.
    result = attack(f"keep = {{}}\n{FILL_QUIETLY}\nreturn {{ message = function() end }}")
    assert_stopped(result.load_error, "memory_limit")
    assert [error.script for error in result.load.errors] == ["attack"]


def test_a_memory_error_inside_a_stdlib_wrapper_is_the_memory_limit() -> None:
    result = attack(
        handler(
            "local t = table.create(100, string.rep('y', 1e5)) "
            "local ok, e = pcall(function() local s = table.concat(t) return s end) print('caught', e)"
        )
    )
    assert_stopped(result.error, "memory_limit")
    assert result.first.texts() == []
