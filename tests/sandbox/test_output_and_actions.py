"""Attacks through what a script hands back: errors, print output, actions, its handler table.

Everything a script produces crosses into Python (which refuses invalid UTF-8) and on to people
(logs, Discord). The kernel must bound it (error length, output bytes, actions per event), clean it
(invalid UTF-8 becomes U+FFFD), copy it (no guest table, cycle or metatable leaves the VM) and read
a script's exports without running its metamethods.
"""

from __future__ import annotations

import pytest

from lua_runtime.results import MAX_ERROR_CHARS
from tests.sandbox.attack import SMALL, Attack, Case, attack, handler, run_attacks

DISCORD = "local d = require('@warden/discord')\n"


def with_discord(body: str) -> str:
    """A script that requires @warden/discord as ``d``, with ``body`` alone on line 3."""
    return DISCORD + handler(body)


#: Handler bodies (line 3, after the require) that fail, and the runtime error message each gets.
FAILURES = {
    "a 1 MB error message": ("error(string.rep('e', 2^20))", "e" * (MAX_ERROR_CHARS - 1) + "…"),
    "invalid UTF-8 in an error": ("error('bad \\255\\254 bytes')", "bad \ufffd\ufffd bytes"),
    "an error object whose __tostring loops": (
        "error(setmetatable({}, { __tostring = function() while true do end end }))",
        "(error object is a table value)",
    ),
    "an error object whose __index loops": (
        "error(setmetatable({}, { __index = function() while true do end end }))",
        "(error object is a table value)",
    ),
    "an error without a value": ("error()", "(error object is a nil value)"),
    "__tostring returning a table": (
        "print(setmetatable({}, { __tostring = function() return {} end }))",
        "'__tostring' must return a string",
    ),
    "invalid UTF-8 in an action's content": (
        "d.send(m.channel_id, 'hi \\255')",
        "content is not valid UTF-8 text",
    ),
    "invalid UTF-8 in an embed": (
        "d.send(m.channel_id, { embeds = { { title = '\\255' } } })",
        "embeds[1].title is not valid UTF-8 text",
    ),
    "a message body that contains itself": (
        "local b = {} b.embeds = { b } d.send(m.channel_id, b)",
        'embeds[1] has an unknown field "embeds" (use title, description, url, color, footer, author, fields)',
    ),
    "a megabyte of content": (
        "d.send(m.channel_id, string.rep('x', 1e6))",
        "content is 1000000 characters long; the limit is 2000",
    ),
    "an id that is a table with __tostring": (
        "d.kick(setmetatable({}, { __tostring = function() return '1100000000000000004' end }))",
        "user_id must be an id string such as msg.author.id, got a table",
    ),
    "yielding from the handler": ("coroutine.yield('x')", "attempt to yield from outside a coroutine"),
}

#: Handler bodies (line 3) that produce output or actions, and what must come out of them.
PRODUCERS = {
    "invalid UTF-8 in print": ("print('a\\255b', '\\xC0\\x80')", ["a\ufffdb\t\ufffd\ufffd"], []),
    "invalid UTF-8 from __tostring": (
        "print(setmetatable({}, { __tostring = function() return '\\255\\255' end }))",
        ["\ufffd\ufffd"],
        [],
    ),
    "an embed in a cycle": (
        "local body = { content = 'x' } local e = { title = 't', footer = { text = 'f' } }"
        " e.footer.back = e e.author = { name = 'a', body = body } body.embeds = { e } d.send(m.channel_id, body)",
        [],
        [{"content": "x", "embeds": [{"author": {"name": "a"}, "footer": {"text": "f"}, "title": "t"}]}],
    ),
    "embeds served by metamethods": (
        # Builders read tables raw (tests/sandbox/test_builders.py): a metamethod is never called.
        "d.send(m.channel_id, { content = 'x', embeds = setmetatable({}, {"
        " __len = function() return 2 end, __index = function() return { title = 'e' } end }) })",
        [],
        [{"content": "x"}],
    ),
    "a body changed after the call": (
        "local b = { content = 'x' } d.send(m.channel_id, b) b.content = 'changed' b.embeds = { b }",
        [],
        [{"content": "x"}],
    ),
    "many return values": ("return table.unpack(table.create(1000, 1))", [], []),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, Attack]:
    cases = {name: Case(with_discord(body)) for name, (body, _) in FAILURES.items()}
    cases |= {name: Case(with_discord(body)) for name, (body, _, _) in PRODUCERS.items()}
    cases["a flood of actions"] = Case(with_discord("while true do d.send(m.channel_id, 'x') end"))
    cases["a flood of actions under pcall"] = Case(
        with_discord("for i = 1, 100 do pcall(d.send, m.channel_id, 'x') end print('after')")
    )
    cases["a flood of actions from coroutines"] = Case(
        with_discord(
            "for i = 1, 100 do coroutine.resume(coroutine.create(function() d.send(m.channel_id, 'x') end)) end"
        )
    )
    cases["a flood of prints"] = Case(with_discord("for i = 1, 1e6 do print(string.rep('p', 100)) end"))
    cases["a megabyte in one print"] = Case(with_discord("print(string.rep('x', 1e6))"))
    return run_attacks(cases)


@pytest.mark.parametrize("name", list(FAILURES))
def test_a_failure_reaches_the_author_bounded_and_clean(runs: dict[str, Attack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    error = result.error
    assert (error.kind, error.line, error.message) == ("runtime", 3, FAILURES[name][1])


@pytest.mark.parametrize("name", list(PRODUCERS))
def test_output_and_actions_leave_the_vm_as_clean_copies(runs: dict[str, Attack], name: str) -> None:
    _, output, actions = PRODUCERS[name]
    result = runs[name]
    result.check_witness()
    assert result.first.errors == []
    assert result.first.texts() == output
    channel = {"channel_id": "1100000000000000002", "script": "attack", "type": "send"}
    assert result.first.actions == [channel | action for action in actions]


@pytest.mark.parametrize(
    "name", ["a flood of actions", "a flood of actions under pcall", "a flood of actions from coroutines"]
)
def test_a_flood_of_actions_stops_at_the_quota(runs: dict[str, Attack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    assert len(result.first.actions) == SMALL.max_actions_per_event
    error = result.error
    assert (error.kind, error.message) == ("limit", "too many actions in one event (the limit is 20)")
    # The quota ends the script's turn: nothing it prints after the limit gets out.
    assert result.first.texts() == []


@pytest.mark.parametrize("name", ["a flood of prints", "a megabyte in one print"])
def test_print_output_is_cut_at_the_quota(runs: dict[str, Attack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    texts = result.first.texts()
    assert sum(len(text.encode()) for text in texts) <= SMALL.max_output_per_event + 100
    assert texts[-1].endswith(f"(print output cut: {SMALL.max_output_per_event} bytes per event)")


def test_empty_prints_count_against_the_output_quota() -> None:
    # The quota used to count bytes of text only: empty prints cost nothing, and a loop of them
    # added lines until the heap was full (65,537 per event at 4 MiB).
    result = attack(with_discord("for i = 1, 20000 do print() end"))
    assert len(result.first.output) <= SMALL.max_output_per_event


# The handler table ----------------------------------------------------------------------------------

#: Exports (whole scripts) that are refused at load, and the start of the message that says why.
REFUSED_EXPORTS = {
    "an integer key": (
        "return { [1] = function() end }",
        "unknown event 1 in the returned table; events are ",
    ),
    "a boolean key": ("return { [true] = function() end }", "unknown event true in the returned table"),
    "a table key": ("return { [{}] = function() end }", "unknown event a table in the returned table"),
    "a float key beside a real handler": (
        "return { message = function() end, [2.5] = function() end }",
        "unknown event 2.5 in the returned table",
    ),
    "a callable table as a handler": (
        "return { message = setmetatable({}, { __call = function() print('called') end }) }",
        "the handler for message must be a function, got a table",
    ),
    "a string": ("return 'message'", "a script must return a table of event handlers"),
    "nothing": ("return", "a script must return a table of event handlers"),
}

#: Exports whose metatables offer handlers that are not in the table itself: the kernel reads the
#: table raw, so none of them is registered and none of their metamethods runs.
METATABLE_TRICKS = {
    "__index offering every handler": (
        "return setmetatable({}, { __index = function(_, k) return function() print('via __index', k) end end })"
    ),
    "__pairs offering a handler": (
        "return setmetatable({}, { __pairs = function() return next, { message = function() print('via __pairs') end } end })"
    ),
    "__iter offering a handler": (
        "return setmetatable({}, { __iter = function() return next, { message = function() print('via __iter') end } end })"
    ),
    "__index that loops": "return setmetatable({}, { __index = function() while true do end end })",
}


@pytest.fixture(scope="module")
def exports() -> dict[str, Attack]:
    cases = {name: Case(source) for name, (source, _) in REFUSED_EXPORTS.items()}
    cases |= {name: Case(source) for name, source in METATABLE_TRICKS.items()}
    cases["a locked metatable over real handlers"] = Case(
        "return setmetatable({ message = function() print('ran') end }, { __metatable = 'locked' })"
    )
    cases["handlers changed after the load"] = Case(
        "local h = {}\n"
        "h.message = function() h.message = nil h.reaction_add = function() end print('ran') end\n"
        "return h",
        events=2,
    )
    return run_attacks(cases)


@pytest.mark.parametrize("name", list(REFUSED_EXPORTS))
def test_a_bad_export_is_refused_with_a_reason(exports: dict[str, Attack], name: str) -> None:
    result = exports[name]
    result.check_witness()
    error = result.load_error
    assert error.kind == "runtime"
    assert error.message.startswith(REFUSED_EXPORTS[name][1])
    assert result.load.handled_events == ["member_join"]


@pytest.mark.parametrize("name", list(METATABLE_TRICKS))
def test_handlers_offered_by_metamethods_are_not_registered(exports: dict[str, Attack], name: str) -> None:
    result = exports[name]
    result.check_witness()
    assert result.load.errors == []
    assert result.load.handled_events == ["member_join"]
    assert result.first.texts() == [] and result.first.errors == []


def test_a_locked_metatable_does_not_hide_real_handlers(exports: dict[str, Attack]) -> None:
    result = exports["a locked metatable over real handlers"]
    result.check_witness()
    assert result.first.texts() == ["ran"]


def test_handlers_are_fixed_at_load(exports: dict[str, Attack]) -> None:
    result = exports["handlers changed after the load"]
    result.check_witness()
    assert result.load.handled_events == ["member_join", "message"]
    assert [event.texts() for event in result.events] == [["ran"], ["ran"]]


def test_yielding_at_the_top_level_fails_the_load() -> None:
    result = attack("coroutine.yield()\nreturn {}")
    error = result.load_error
    assert (error.kind, error.line, error.message) == (
        "runtime",
        1,
        "attempt to yield from outside a coroutine",
    )


def test_a_frozen_handler_table_is_read() -> None:
    # A frozen table keeps its fields in a hidden store; the kernel used to read exports raw, find
    # nothing, and load the script without error and without handlers.
    result = attack("return table.freeze({ message = function() print('ran') end })")
    assert result.load.handled_events == ["member_join", "message"]
    assert result.first.texts() == ["ran"]
