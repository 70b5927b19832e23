"""Escape attempts: every route out of the guest environment, and every route into another script.

The guest gets a fresh globals table per script over a shared, locked base; no ``io``, ``debug``,
``package``, ``load`` or ``string.dump``; ``os`` reduced to time/clock/date/difftime; no Python object
anywhere. Each probe below runs in a guild of its own and prints what it reached; the isolation
tests load several scripts into one guild, or several guilds into one process, and check that no
script can read, rewrite or act for another.
"""

from __future__ import annotations

import re

import pytest

from lua_runtime.sandbox import Sandbox
from tests.sandbox.attack import (
    SMALL,
    WITNESS_EVENT,
    WITNESS_OUTPUT,
    WITNESS_SOURCE,
    Attack,
    Case,
    Event,
    handler,
    run_attacks,
    run_child,
)

REQUIRE_REFUSED = 'false\tcannot require "{}": Warden scripts can require @warden/'

#: Walks every table a script can reach (values, keys, metatables) and prints the path of anything
#: that is a userdata: a Python object would be one.
FIND_USERDATA = """
local seen, found = {}, {}
local function walk(v, path, depth)
  if type(v) == "userdata" then found[#found + 1] = path return end
  if type(v) ~= "table" or seen[v] or depth > 8 then return end
  seen[v] = true
  for k, x in next, v do
    walk(k, path .. "[key]", depth + 1)
    walk(x, path .. "." .. tostring(k), depth + 1)
  end
  local mt = getmetatable(v)
  if mt ~= nil then walk(mt, path .. "<metatable>", depth + 1) end
end
local _ = bit32.band -- compiles bit32's functions into its table
local names = { "assert", "error", "ipairs", "next", "pairs", "select", "rawequal", "rawget", "rawset",
  "rawlen", "getmetatable", "setmetatable", "tonumber", "tostring", "type", "typeof", "pcall", "xpcall",
  "print", "require", "collectgarbage", "string", "table", "math", "utf8", "coroutine", "os", "bit32",
  "unpack", "_G", "_ENV", "python", "py", "none", "package", "debug" }
for _, name in names do walk(_G[name], name, 0) end
walk(getmetatable(""), "string metatable", 0)
walk(m, "payload", 0)
walk(require("@warden/discord"), "@warden/discord", 0)
walk(coroutine.running(), "running", 0)
print(#found == 0 and "none" or table.concat(found, ", "))
"""

#: Handler bodies (line 2) that look for a way out, and the line(s) each must print: a string, a
#: list of lines, or a pattern the single line must match.
PROBES: dict[str, tuple[str, str | list[str] | re.Pattern[str]]] = {
    "os holds only time, clock, date and difftime": (
        "local names = {} for k in pairs(os) do names[#names + 1] = k end table.sort(names) print(table.concat(names, ','))",
        "clock,date,difftime,time",
    ),
    "os.execute, exit, getenv, remove, rename, tmpname, setlocale": (
        "print(os.execute, os.exit, os.getenv, os.remove, os.rename, os.tmpname, os.setlocale)",
        "\t".join(["nil"] * 7),
    ),
    "io, debug and package": ("print(io, debug, package)", "nil\tnil\tnil"),
    "require of os": (
        "print(pcall(require, 'os'))",
        re.compile(re.escape(REQUIRE_REFUSED.format("os")) + ".*"),
    ),
    "require of io": (
        "print(pcall(require, 'io'))",
        re.compile(re.escape(REQUIRE_REFUSED.format("io")) + ".*"),
    ),
    "require of debug": (
        "print(pcall(require, 'debug'))",
        re.compile(re.escape(REQUIRE_REFUSED.format("debug")) + ".*"),
    ),
    "require of a file": (
        "print(pcall(require, './attack'))",
        re.compile(re.escape(REQUIRE_REFUSED.format("./attack")) + ".*"),
    ),
    "require of a path under @warden": (
        "print(pcall(require, '@warden/../../etc/passwd'))",
        re.compile(re.escape(REQUIRE_REFUSED.format("@warden/../../etc/passwd")) + ".*"),
    ),
    "load, loadstring, dofile, loadfile": ("print(load, loadstring, dofile, loadfile)", "nil\tnil\tnil\tnil"),
    "string.dump, as a field and as a method": ("print(string.dump, ('x').dump)", "nil\tnil"),
    "getfenv and setfenv": ("print(getfenv, setfenv)", "nil\tnil"),
    "the python module": ("print(python, _G.python, rawget(_G, 'python'))", "nil\tnil\tnil"),
    "collectgarbage options other than count": (
        "for _, option in { 'collect', 'step', 'stop', 'restart', 'incremental', 'generational', 'setpause' } do "
        "print(option, pcall(collectgarbage, option)) end print(type(collectgarbage('count')))",
        [
            f'{option}\tfalse\tcollectgarbage only supports "count" in Warden scripts'
            for option in ("collect", "step", "stop", "restart", "incremental", "generational", "setpause")
        ]
        + ["number"],
    ),
    "the string metatable": (
        "print(getmetatable(''), type(getmetatable('')))",
        "The metatable is locked\tstring",
    ),
    "setmetatable on a string": (
        "print(pcall(setmetatable, '', {}))",
        "false\tbad argument #1 to '?' (table expected, got string)",
    ),
    "the environment's metatable": ("print(getmetatable(_G), getmetatable(_ENV))", "false\tfalse"),
    "setmetatable on the environment": (
        "print(pcall(setmetatable, _G, {}))",
        "false\tcannot change a protected metatable",
    ),
    "_G is the script's own table, not the base": (
        "print(_G == _ENV, rawget(_G, 'string'), rawget(_G, 'print'))",
        "true\tnil\tnil",
    ),
    "rawget on library tables": (
        "print(rawget(string, 'dump'), rawget(os, 'execute'), rawget(os, 'exit'))",
        "nil\tnil\tnil",
    ),
    "replacing _ENV": ("local p, t = print, type _ENV = {} p(t(_G), t(string))", "nil\tnil"),
    "closing the running coroutine": (
        "print(pcall(coroutine.close, coroutine.running()))",
        re.compile(r"false\t.*cannot close a running coroutine"),
    ),
    "os.date with an unknown conversion": (
        "print(pcall(os.date, '%Ez'))",
        re.compile(r"false\tbad argument #1 to '(os\.)?date' \(invalid conversion specifier '%Ez'\)"),
    ),
    "os.date of a huge time": (
        "print(pcall(os.date, '*t', 2^62))",
        "false\tdate result cannot be represented in this installation",
    ),
    "os.time with a huge year": (
        "print(pcall(os.time, { year = 2^60, month = 1, day = 1 }))",
        "false\tfield 'year' is out-of-bound",
    ),
    "os.time with huge fields": (
        "print(pcall(os.time, { year = 2000, month = 2^40, day = -2^40, hour = 2^31 }))",
        "false\tfield 'month' is out-of-bound",
    ),
    "None in a payload is nil, not python.none": ("print(m.thread_id, rawget(m, 'thread_id'))", "nil\tnil"),
    "payload tables have no metatable": ("print(getmetatable(m), getmetatable(m.author))", "nil\tnil"),
    "no Python object anywhere": (FIND_USERDATA, "none"),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, Attack]:
    cases = {name: Case(handler(body)) for name, (body, _) in PROBES.items()}
    cases["closing the kernel's coroutine kept from an earlier event"] = Case(
        "local saved\n"
        "return { message = function()\n"
        "  if saved then print(coroutine.close(saved), coroutine.status(saved)) return end\n"
        "  saved = coroutine.running() coroutine.yield()\n"
        "end }",
        events=3,
    )
    return run_attacks(cases)


@pytest.mark.parametrize("name", list(PROBES))
def test_a_probe_finds_no_way_out(runs: dict[str, Attack], name: str) -> None:
    _, expected = PROBES[name]
    result = runs[name]
    result.check_witness()
    assert result.first.errors == []
    texts = result.first.texts()
    if isinstance(expected, re.Pattern):
        assert len(texts) == 1 and expected.fullmatch(texts[0]), texts
    else:
        assert texts == (expected if isinstance(expected, list) else [expected])


def test_closing_the_kernels_coroutine_from_an_earlier_event_changes_nothing(runs: dict[str, Attack]) -> None:
    result = runs["closing the kernel's coroutine kept from an earlier event"]
    result.check_witness()
    yielded, closed, again = result.events
    assert [(error.kind, error.line) for error in yielded.errors] == [("runtime", 4)]
    assert closed.texts() == ["true\tdead"] and closed.errors == []
    assert again.texts() == ["true\tdead"] and again.errors == []


@pytest.mark.parametrize(
    ("value", "attribute"),
    [(object(), "__class__"), (print, "__self__"), (test_a_probe_finds_no_way_out, "__globals__")],
    ids=["__class__", "__self__", "__globals__"],
)
def test_python_attributes_are_refused_if_a_python_object_ever_reaches_lua(
    value: object, attribute: str
) -> None:
    # The second wall: no Python object is ever handed to guest code (the probes above), and if one
    # slipped through, the runtime's attribute filter refuses every attribute. (Item access on a
    # Python mapping is never filtered by lupa: only plain data may cross, as Lua tables.)
    read = Sandbox(SMALL).lua.eval("function(o, name) return o[name] end")
    with pytest.raises(AttributeError, match="Python attributes are not accessible from Lua"):
        read(value, attribute)


# Isolation between the scripts of one guild ---------------------------------------------------------

READER = (
    "local d = require('@warden/discord')\n"
    "return { message = function(m)\n"
    "  print(secret, secret2, secret3, secret4)\n"
    "  print(m.content:lower():find('badword', 1, true) ~= nil, string.format('%d', 7), #('a,b'):split(','))\n"
    "  d.send(m.channel_id, 'welcome!')\n"
    "end }"
)
READER_OUTPUT = ["nil\tnil\tnil\tnil", "true\t7\t2"]


def run_beside_reader(source: str) -> list[Event]:
    """Load ``source`` as "attack" before READER in one guild; dispatch two messages."""
    run = run_child({1: [("attack", source), ("reader", READER)]}, [(1, "message", None)] * 2)
    return run.events


def assert_reader_untouched(events: list[Event]) -> None:
    for event in events:
        assert event.exception is None
        assert event.error_of("reader") is None, event.errors
        assert event.texts("reader") == READER_OUTPUT
        reader_actions = [action for action in event.actions if action["script"] == "reader"]
        assert [(action["type"], action.get("content")) for action in reader_actions] == [
            ("send", "welcome!")
        ]


def test_a_scripts_globals_are_invisible_to_the_next_script() -> None:
    events = run_beside_reader(
        "secret = 1 _G.secret2 = 2 rawset(_G, 'secret3', 3) _ENV.secret4 = 4\n"
        "return { message = function() secret = 'again' end }"
    )
    assert_reader_untouched(events)


@pytest.mark.parametrize(
    "tampering",
    [
        "string.lower = function() return 'all clean' end",
        "string.format = function() return '0' end",
        "string.split = function() return {} end",
        "rawset(string, 'lower', function() return 'all clean' end)",
        "table.freeze(string)",
    ],
    ids=["string.lower", "string.format", "string.split", "rawset(string)", "table.freeze(string)"],
)
def test_a_script_cannot_change_the_library_another_script_uses(tampering: str) -> None:
    # Library tables are shared by the scripts of a guild. They used to be writable: one script
    # could blind another's banned-word filter by replacing string.lower. The tampering runs under
    # pcall so that the attacker loads whether the write raises or is ignored.
    assert_reader_untouched(run_beside_reader(f"pcall(function() {tampering} end)\nreturn {{}}"))


def test_a_script_cannot_rewrite_the_discord_module_another_script_calls() -> None:
    # require('@warden/discord') is one table per VM. Luau's rawset used to bypass its __newindex:
    # an attacker made the reader's `send` call the real `ban`, pushed during the reader's turn,
    # under the reader's name and capabilities.
    assert_reader_untouched(
        run_beside_reader(
            "local d = require('@warden/discord')\n"
            "local ban = d.ban\n"
            "pcall(rawset, d, 'send', function(channel_id, body) ban('1100000000000000004', 'banned by a send') end)\n"
            "return {}"
        )
    )


def test_a_script_cannot_take_over_the_next_scripts_turn() -> None:
    # coroutine.running() used to hand out the kernel's runner coroutine: a script yielded from its
    # handler, kept the runner, resumed it in the next event to get the kernel's DONE sentinel and
    # yielded DONE; the kernel took the suspended handler for an idle runner, and the attacker ran
    # the next script's turn, with its handler and payload, its actions under that script's name.
    hijack = (
        "local d = require('@warden/discord')\n"
        "local saved, stage = nil, 0\n"
        "return { message = function(m)\n"
        "  stage += 1\n"
        "  if stage == 1 then saved = coroutine.running() coroutine.yield()\n"
        "  elseif stage == 2 then\n"
        "    local _, done = coroutine.resume(saved)\n"
        "    coroutine.yield(done)\n"
        "    d.ban(m.author.id, 'in the reader\\'s name')\n"
        "    coroutine.yield(done)\n"
        "  end\n"
        "end }"
    )
    assert_reader_untouched(run_beside_reader(hijack))


# Isolation between guilds -----------------------------------------------------------------------------


def test_one_guilds_runaway_scripts_leave_another_guild_untouched() -> None:
    # Guild 1 fills its heap, spins, and tries to rewrite its libraries; guild 2 shares the process,
    # the thread, and nothing else.
    runaway = (
        "keep = {}\n"
        "return { message = function()\n"
        "  pcall(function() while true do keep[#keep + 1] = string.rep('x', 1e4) .. #keep end end)\n"
        "end, member_join = function() while true do end end }"
    )
    tamper = "pcall(function() string.lower = function() return '' end end)\nreturn {}"
    guilds = {
        1: [("runaway", runaway), ("tamper", tamper)],
        2: [("reader", READER), ("witness", WITNESS_SOURCE)],
    }
    steps = [(1, "message", None), (2, "message", None), (1, WITNESS_EVENT, None), (2, WITNESS_EVENT, None)]
    run = run_child(guilds, steps)
    spent_memory, read, spent_time, witnessed = run.events
    assert [(error.script, error.kind) for error in spent_memory.errors] == [("runaway", "memory_limit")]
    assert [(error.script, error.kind) for error in spent_time.errors] == [("runaway", "time_limit")]
    assert_reader_untouched([read])
    assert witnessed.errors == [] and witnessed.texts() == [WITNESS_OUTPUT]
