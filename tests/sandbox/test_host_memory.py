"""Host memory headroom: what the host hands a running script must fit under the script's own ceiling.

lupa enforces one heap ceiling per runtime. The host lifts it while it pushes data into the VM
(``Sandbox.lift_for``), because a push into a full heap is an unprotected Lua error: the process
aborts, or the worker waits forever for the GIL it holds. If what the host pushed while the guest
runs (``kv.get`` answers, host modules) could live in that headroom, a guest could fill the headroom
without allocating anything of its own (storing answers into a pre-sized table allocates nothing)
and the next push would be fatal. So every push made while the guest runs is checked against the
guest's ceiling first, and fails with ``memory_limit`` when it does not fit; and a VM that ends a
call too full for the next push (an event's payload) is rebuilt before it.

Every hostile case runs in a child process (``attack.py``): an abort or a hang fails its test, not
pytest. Each case asserts that the guest saw ``memory_limit``, that its data never went past its
ceiling, and that the next event and a witness script still run.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from lupa import lua54

from lua_runtime.events import sample_payload
from lua_runtime.guild_vm import MAX_PAYLOAD_COST, GuildVM, ScriptSource
from lua_runtime.heap_cost import lua_cost
from lua_runtime.limits import MiB, SandboxLimits
from lua_runtime.sandbox import PUSH_SLACK, Sandbox
from tests.sandbox.attack import (
    CASE_CPU_SECONDS,
    CHILD_CPU_SECONDS,
    SMALL,
    WITNESS_EVENT,
    WITNESS_OUTPUT,
    WITNESS_SOURCE,
    ChildRun,
    Event,
    assert_stopped,
    run_child,
)
from tests.support.sandbox_child import TIMERS

#: A handler (line 4 is ``body``) with ``@warden/kv`` at hand and ``keep``, a table that outlives
#: the event, as an upvalue.
KV_HANDLER = """local kv = require("@warden/kv")
local keep = {{}}
return {{ message = function(m)
{body}
end }}"""


def _runtime_base() -> int:
    """The bytes a new runtime holds before anything runs: lupa counts the ceiling above them, and
    ``collectgarbage("count")`` counts them too."""
    lua = Sandbox(SMALL).lua
    return lua.get_memory_used(total=True) - lua.get_memory_used()


def fill_and_keep(margin_kib: int) -> str:
    """Code that fills the heap with empty tables, all kept in ``full`` (its array is sized first,
    so nothing becomes garbage), until it is within ``margin_kib`` KiB of the 4 MiB ceiling. (A fill
    that fails instead would stop the script: memory errors cannot be caught.)"""
    ceiling_kib = (_runtime_base() + SMALL.max_memory) / 1024
    return (
        "local full = table.create(60000, false) local i = 0 "
        f"while collectgarbage('count') < {ceiling_kib - margin_kib} do i += 1 full[i] = {{}} end"
    )


#: Stores ``kv.get(key)`` into ``keep`` until the heap is within ``margin`` KiB of the 4 MiB
#: ceiling, then returns normally: the event ends with the heap nearly full of kv answers.
ALMOST_FULL = "while collectgarbage('count') < 4096 - {margin} do keep[#keep + 1] = kv.get('{key}') end"

#: Leaves 2 KiB: too little for any host module, even once the garbage is collected.
FULL = fill_and_keep(2)

#: Handler bodies (line 4) that keep pushes from the host until the heap is full. Each ends with a
#: memory_limit error at line 4.
FLOODS = {
    "the issue's example: a long string got 1000 times into a pre-sized table": (
        "kv.set('big', string.rep('x', 65000)) local t = table.create(1000, false) "
        "for i = 1, 1000 do t[i] = kv.get('big') end"
    ),
    "a list of strings got again and again": (
        "kv.set('list', table.create(2000, 'abcdefgh')) local t = table.create(1000, false) "
        "for i = 1, 1000 do t[i] = kv.get('list') end"
    ),
    "a nested record got again and again": (
        "kv.set('rec', { a = string.rep('y', 5000), b = { 1, 2, 3 }, c = { d = { e = string.rep('z', 9000) } } }) "
        "local t = table.create(1000, false) for i = 1, 1000 do t[i] = kv.get('rec') end"
    ),
    "lists of long keys": (
        "for i = 1, 100 do kv.set(string.rep('k', 200) .. i, i) end "
        "local t = table.create(2000, false) for i = 1, 2000 do t[i] = kv.keys() end"
    ),
    "strings of many sizes, in turn": (
        "local sizes = { 41, 100, 1000, 10000, 30000, 65000 } "
        "for _, n in sizes do kv.set('s' .. n, string.rep('x', n)) end "
        "local t = table.create(5000, false) for i = 1, 5000 do t[i] = kv.get('s' .. sizes[i % 6 + 1]) end"
    ),
    "answers kept in an upvalue across events": "kv.set('big', string.rep('x', 30000)) "
    "while true do keep[#keep + 1] = kv.get('big') end",
    "answers kept in a coroutine's stack": (
        "kv.set('big', string.rep('x', 30000)) local co = coroutine.wrap(function(...) "
        "local function deeper(...) return deeper(kv.get('big'), ...) end return deeper() end) co()"
    ),
    "error messages kept": (
        f"kv.set('{'n' * 250}', 'text') local t = table.create(100000, false) "
        f"for i = 1, 100000 do t[i] = select(2, pcall(kv.incr, '{'n' * 250}')) end"
    ),
    "a Luau library loaded into a heap kept full": f"{FULL} local x = math.round(1.5)",
    "bit32 loaded into a heap kept full": f"{FULL} local x = bit32.band(1, 3)",
    "string.format's group loaded into a heap kept full": f"{FULL} string.format('%5.1f', 1.5)",
    "@warden/discord loaded into a heap kept full": f"{FULL} require('@warden/discord').send(m.channel_id, 'x')",
}

#: What the floods' events cost: a full collection per refused push, and the flood itself (the
#: costliest, a 2,000-string list got again and again, takes about 130 ms of CPU to fill 4 MiB). The
#: budget is four times that, so that the heap always fills first, however loaded the machine.
FLOOD_LIMITS = SandboxLimits(cpu_ms_per_event=600, max_memory=4 * MiB)


def guilds_of(sources: dict[str, str]) -> dict[int, list[tuple[str, str]]]:
    """A guild per source: the source as script "attack", then the witness."""
    return {
        i: [("attack", source), ("witness", WITNESS_SOURCE)] for i, source in enumerate(sources.values(), 1)
    }


def by_guild(run: ChildRun) -> dict[int, list[Event]]:
    events: dict[int, list[Event]] = {}
    for event in run.events:
        events.setdefault(event.guild, []).append(event)
    return events


def assert_witness_served(event: Event) -> None:
    assert event.exception is None
    assert event.errors == [], event.errors
    assert event.texts() == [WITNESS_OUTPUT]


@pytest.fixture(scope="module")
def floods() -> dict[str, list[Event]]:
    sources = {name: KV_HANDLER.format(body=body) for name, body in FLOODS.items()}
    guilds = guilds_of(sources)
    steps: list[tuple[int, str, dict[str, Any] | None]] = []
    for guild in guilds:
        steps += [(guild, "message", None), (guild, "message", None), (guild, WITNESS_EVENT, None)]
    cpu = CHILD_CPU_SECONDS + len(guilds) * 2 * CASE_CPU_SECONDS
    run = run_child(guilds, steps, FLOOD_LIMITS, cpu)
    events = by_guild(run)
    return {name: events[guild] for guild, name in enumerate(sources, 1)}


@pytest.mark.parametrize("name", list(FLOODS))
def test_a_flood_of_host_pushes_ends_in_the_memory_limit_under_the_guests_ceiling(
    floods: dict[str, list[Event]], name: str
) -> None:
    first, second, witness = floods[name]
    for event in (first, second):
        assert event.exception is None
        error = event.error_of("attack")
        assert_stopped(error, "memory_limit", FLOOD_LIMITS)
        assert error.line == 4
        # The host never let the guest's data into its headroom.
        assert event.memory_used <= FLOOD_LIMITS.max_memory
    assert_witness_served(witness)


def test_interned_strings_got_many_times_are_not_refused() -> None:
    # A short string is interned: getting it again allocates nothing, and nothing is refused.
    body = (
        "kv.set('s', 'short') local t = table.create(3000, false) for i = 1, 3000 do t[i] = kv.get('s') end"
    )
    body += " print(#t, t[3000])"
    run = run_child(guilds_of({"short": KV_HANDLER.format(body=body)}), [(1, "message", None)])
    [event] = run.events
    assert event.errors == []
    assert event.texts("attack") == ["3000\tshort"]


def test_a_heap_left_just_short_of_the_ceiling_is_rebuilt_before_the_next_payload() -> None:
    # The handler stops itself within 100 KiB of its ceiling, its kv answers kept: too full for the
    # next event's payload (a long message with a hundred mentions). The VM is rebuilt first.
    body = (
        "kv.set('big', string.rep('x', 20000)) "
        + ALMOST_FULL.format(margin=100, key="big")
        + " print('full')"
    )
    payload = sample_payload("message")
    payload["content"] = "y" * 4000
    payload["mentions"] = [{"id": str(10**18 + i), "username": f"user{i}"} for i in range(100)]
    steps = [(1, "message", payload)] * 3 + [(1, WITNESS_EVENT, None)]
    run = run_child(guilds_of({"brim": KV_HANDLER.format(body=body)}), steps)
    events = run.events
    for event in events[:3]:
        assert event.exception is None
        assert event.errors == [], event.errors
        assert event.texts("attack") == ["full"]
        assert event.memory_used <= SMALL.max_memory
        assert not event.trusted  # too full to keep: rebuilt before the next push
    assert [event.rebuilds for event in events] == [0, 1, 2, 3]
    assert_witness_served(events[3])


def test_timers_that_flood_or_fill_the_heap_are_stopped_and_the_vm_recovers() -> None:
    flood = (
        "kv.set('big', string.rep('x', 65000)) task.delay(0, function() "
        "local t = table.create(1000, false) for i = 1, 1000 do t[i] = kv.get('big') end end)"
    )
    brim = (
        "kv.set('big', string.rep('x', 20000)) task.delay(0, function() "
        + ALMOST_FULL.format(margin=100, key="big")
        + " end)"
    )
    guilds = guilds_of({"flood": KV_HANDLER.format(body=flood), "brim": KV_HANDLER.format(body=brim)})
    steps: list[tuple[int, str, dict[str, Any] | None]] = []
    for guild in guilds:
        steps += [(guild, "message", None), (guild, TIMERS, None), (guild, "message", None)]
        steps += [(guild, TIMERS, None), (guild, WITNESS_EVENT, None)]
    run = run_child(guilds, steps, cpu_seconds=CHILD_CPU_SECONDS + 8 * CASE_CPU_SECONDS)
    flood_events, brim_events = by_guild(run).values()
    for event in flood_events + brim_events:
        assert event.exception is None
        assert event.memory_used <= SMALL.max_memory
    for timers in (flood_events[1], flood_events[3]):
        assert timers.event == "timer"
        assert_stopped(timers.error_of("attack"), "memory_limit")
    for timers in (brim_events[1], brim_events[3]):
        assert timers.errors == [] and not timers.trusted
    assert brim_events[2].rebuilds == 1  # the next event got a fresh VM
    assert_witness_served(flood_events[4])
    assert_witness_served(brim_events[4])


def test_a_top_level_that_leaves_the_heap_nearly_full_is_not_loaded() -> None:
    # Rebuilding would load it again, full again: it is unloaded instead, with an error that says
    # why, and the VM serves the other scripts without rebuilding at every event.
    source = fill_and_keep(100) + "\nreturn { message = function() print('loaded', #full) end }"
    steps = [(1, "message", None)] * 3 + [(1, WITNESS_EVENT, None)]
    run = run_child(guilds_of({"hoarder": source}), steps)
    [error] = run.loads[1].errors
    assert (error.script, error.kind) == ("attack", "memory_limit")
    assert error.message.startswith("memory limit exceeded (4 MiB per server): the top level left ")
    assert error.message.endswith(
        "too little room to run events; the script is not loaded (keep less at load time)"
    )
    assert run.loads[1].handled_events == [WITNESS_EVENT]
    for event in run.events:
        assert event.exception is None and event.trusted and event.rebuilds == 0
        assert event.memory_used < SMALL.max_memory / 2  # what the script kept went with it
    assert run.events[0].texts() == []
    assert_witness_served(run.events[3])


# --- in-process: no guest code is hostile here ------------------------------------------------------


def test_a_payload_too_big_to_push_safely_is_refused_and_the_vm_goes_on() -> None:
    vm = GuildVM(1, [ScriptSource("s", "return { message = function(m) print(#m.content) end }")], SMALL)
    payload = sample_payload("message")
    payload["content"] = "x" * (MAX_PAYLOAD_COST + 1)
    with pytest.raises(
        ValueError, match=r"payload too large: about 4\.0 MiB once in Lua; the limit is 4 MiB"
    ):
        vm.dispatch("message", payload)
    payload["mentions"] = [{"id": str(i), "username": "u" * 100} for i in range(30_000)]
    payload["content"] = "ok"
    with pytest.raises(ValueError, match="payload too large"):
        vm.dispatch("message", payload)
    payload["mentions"] = []
    payload["content"] = "x" * 100_000  # big, but within the bound
    assert vm.dispatch("message", payload).output[0].text == "100000"


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice(
            [
                1,
                2.5,
                -(2**62),
                True,
                False,
                None,
                "",
                "short",
                "x" * rng.randint(0, 200),
                "é€😀" * rng.randint(0, 40),
            ]
        )
    if roll < 0.7:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 12))]
    return {f"k{rng.randint(0, 10**9)}": _random_value(rng, depth + 1) for _ in range(rng.randint(0, 12))}


def test_the_heap_cost_estimate_bounds_what_lupa_allocates() -> None:
    # Sandbox.lift_for trusts lua_cost (plus PUSH_SLACK) to bound a push: check it against lupa's
    # own count, for shapes of every kind. Collection is stopped, so nothing is freed meanwhile.
    rng = random.Random(16)
    shapes: list[Any] = [
        [{}] * 500,
        [[]] * 500,
        list(range(1000)),
        {str(i): i for i in range(1000)},
        {str(i): {} for i in range(300)},
        ["x" * 41] * 200,
        "y" * 100_000,
        "é" * 1000,
    ]
    shapes += [_random_value(rng) for _ in range(200)]
    for value in shapes:
        lua = lua54.LuaRuntime(max_memory=64 * MiB)
        lua.execute("collectgarbage('stop')")
        before = lua.get_memory_used()
        pushed = lua.table_from(value, recursive=True) if type(value) in (list, dict) else lua.table(value)
        used = lua.get_memory_used() - before
        wrapper = lua_cost([]) if type(value) not in (list, dict) else 0  # lua.table's own table
        assert used <= lua_cost(value) + wrapper + PUSH_SLACK, repr(value)[:200]
        del pushed
