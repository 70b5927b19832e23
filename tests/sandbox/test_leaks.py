"""What a script can learn about the process and other guilds: no address, no other guild's CPU.

Guild VMs share a process (and, under the thread pool, worker threads). Lua would show a script
heap addresses (`tostring({})` is "table: 0x5581b2c4d6e0", `string.format("%p")`, and
`math.randomseed()` returned the address of the VM's state), which help an attack on the process
and, as they change, show the allocations other guilds' scripts make. And `os.clock()` was the
process's CPU time: a side channel on every other guild's activity. A guild VM now names tables,
functions and threads by numbers of its own, seeds math.random from the host's randomness, and its
os.clock is the CPU time its own scripts used. Every script runs in a child process
(tests/sandbox/attack.py).
"""

from __future__ import annotations

import re

from lua_runtime.limits import SandboxLimits
from tests.sandbox.attack import SMALL, WITNESS_EVENT, WITNESS_SOURCE, attack, handler, run_child

#: A heap address as Lua prints one: more hex digits than the VM's own numbers (eight) ever take.
ADDRESS = re.compile(r"0x[0-9a-fA-F]{9,}")

NAMES = """local t, u = {}, {}
local co = coroutine.create(print)
print(tostring(t), tostring(u), tostring(t))
print(t, print, rawget, co)
print(string.format('%s|%p|%*|%5s', t, u, co, {}))
print(`{t} {rawget}`)
print(tostring(setmetatable({}, { __name = 'Point' })), tostring(setmetatable({}, { __name = 'Hidden', __metatable = false })))
print(tostring(setmetatable({}, { __tostring = function() return 'custom' end })), string.format('%s', setmetatable({}, { __tostring = function() return 'mine' end })))
print(string.format('%p %p %p %p', 'abc', 1, nil, true))
print(tostring(string) == tostring(string), tostring(coroutine.running()))"""


def test_tostring_and_friends_show_the_vms_own_numbers_never_an_address() -> None:
    result = attack(handler(NAMES))
    assert result.error is None, result.error
    assert result.first.texts() == [
        "table: 0x00000001\ttable: 0x00000002\ttable: 0x00000001",
        "table: 0x00000001\tfunction: 0x00000003\tfunction: 0x00000004\tthread: 0x00000005",
        "table: 0x00000001|0x00000002|thread: 0x00000005|table: 0x00000006",
        "table: 0x00000001 function: 0x00000004",
        "Point: 0x00000007\tHidden: 0x00000008",
        "custom\tmine",
        "(null) (null) (null) (null)",
        "true\tthread: 0x0000000a",
    ]


def test_errors_and_messages_show_no_address() -> None:
    body = (
        "print(pcall(error, {})) print(select(2, pcall(function() local t = {} t() end)))"
        " print(pcall(string.rep, {})) print(pcall(table.concat, { {} }))"
        " print(select(2, pcall(function() return {} < {} end)))"
        " error(setmetatable({}, { __tostring = function() return 'x' end }))"
    )
    result = attack(handler(body))
    texts = result.first.texts()
    assert texts[0] == "false\ttable: 0x00000001"
    assert result.error is not None and result.error.message == "(error object is a table value)"
    for line in [*texts, result.error.message]:
        assert not ADDRESS.search(line), line


def test_each_vm_numbers_its_own_values() -> None:
    # The numbers are the VM's, not the process's: what one guild shows tells nothing of another.
    busy = handler("for i = 1, 50 do tostring({}) end print(tostring({}))")
    run = run_child({1: [("busy", busy)], 2: [("idle", busy)]}, [(1, "message", None), (2, "message", None)])
    assert [event.texts() for event in run.events] == [["table: 0x00000033"], ["table: 0x00000033"]]


def test_math_randomseed_leaks_no_address_and_takes_a_seed_as_in_luau() -> None:
    body = (
        "print(pcall(math.randomseed)) print(select('#', math.randomseed(7)))"
        " math.randomseed(42) print(math.random(1, 1e9), math.random(1, 1e9))"
    )
    run = run_child(
        {1: [("a", handler(body))], 2: [("b", handler(body))]}, [(1, "message", None), (2, "message", None)]
    )
    first, second = (event.texts() for event in run.events)
    assert first[:2] == ["false\tinvalid argument #1 to 'randomseed' (number expected, got no value)", "0"]
    assert first == second  # the same seed, the same numbers
    for line in first:
        assert not ADDRESS.search(line) and not re.search(r"\d{12,}", line), line


# os.clock ----------------------------------------------------------------------------------------

CLOCK_AT_TOP = "print(os.clock())\nreturn { message = function() print(os.clock()) end }"


def test_os_clock_starts_from_the_vms_own_time_not_the_processs() -> None:
    # The child process has used a quarter of a second of CPU before it builds this VM (imports,
    # other guilds): Lua's os.clock would show it. The VM's clock can show only its own calls: a
    # build and an event, each within its budget of 50 ms.
    run = run_child({1: [("clock", CLOCK_AT_TOP)]}, [(1, "message", None)])
    at_load = float(run.loads[1].output[0].text)
    in_event = float(run.events[0].texts()[0])
    assert 0 <= at_load < 0.05
    assert at_load <= in_event < at_load + 0.05


#: Spins for 40 ms of its own CPU (its budget is 50 ms), then reports.
SPINNER = handler("local s = os.clock() while os.clock() - s < 0.04 do end print('spun')")


def test_os_clock_does_not_count_another_guilds_work() -> None:
    # Guild 2 spins for 3 x 40 ms between guild 1's two readings, on the same thread. Guild 1's own
    # clock moves by no more than its one event in between can use (its budget: 50 ms).
    run = run_child(
        {1: [("clock", CLOCK_AT_TOP)], 2: [("spinner", SPINNER)]},
        [
            (1, "message", None),
            (2, "message", None),
            (2, "message", None),
            (2, "message", None),
            (1, "message", None),
        ],
    )
    first, second = (float(event.texts()[0]) for event in run.events if event.guild == 1)
    assert [event.texts() for event in run.events if event.guild == 2] == [["spun"]] * 3
    assert 0 <= second - first < 0.05


def test_os_clock_measures_cpu_within_a_handler_and_never_runs_backwards() -> None:
    body = (
        "local s = os.clock() local n = 0 while os.clock() - s < 0.02 do n += 1 end"
        " print(n > 0, os.clock() - s >= 0.02, os.clock())"
    )
    limits = SandboxLimits(cpu_ms_per_event=50, max_memory=SMALL.max_memory)
    run = run_child(
        {1: [("timer", handler(body)), ("witness", WITNESS_SOURCE)]},
        [(1, "message", None)] * 4 + [(1, WITNESS_EVENT, None)],
        limits,
    )
    readings = []
    for event in run.events[:4]:
        assert event.errors == []
        measured, reached, now = event.texts()[0].split("\t")
        assert (measured, reached) == ("true", "true")
        readings.append(float(now))
    assert readings == sorted(readings)
    # Four events of at least 20 ms each, and at most a budget each (with the VM's build).
    assert 0.08 <= readings[-1] < 5 * 0.05
    assert run.events[-1].texts() == ["alive a,b,c 19"]
