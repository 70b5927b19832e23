"""The @warden/discord builders read a script's tables once, raw, and check only their copy.

A builder that read a value twice could be told two different things: ``#embeds`` checked at 10
through a ``__len`` and looped over at 2,500 made one ``send`` of 2,500 embeds and 5.9 MB of action
JSON. So a message body is copied once with raw reads (``next``, never a metamethod) into a plain
table, bounded in entries and depth, and only the copy is checked and turned into the action. These
tests hand the builders proxies, shifting lengths, tables that metamethods would change while they
are read, and huge bodies; every metamethod counts its calls, and the count must stay at zero.
They run in a child process (``attack.py``), as hostile scripts do.
"""

from __future__ import annotations

import json

import pytest

from tests.sandbox.attack import Attack, Case, run_attacks
from tests.sandbox.test_output_and_actions import with_discord

CHANNEL = "1100000000000000002"

#: Metamethods that count their calls in ``calls`` (a global of the attack script), and would answer
#: differently on each call; ``e`` is a valid embed. Prepended to a handler body on line 3.
SPY = (
    "calls = 0 local e = { title = 'e' } "
    "local function spy(answer) return function(...) calls += 1 return answer(calls, ...) end end "
)

#: Handler bodies (line 3) whose send succeeds: what the action holds (besides type, channel_id and
#: script), and the output (the calls count, printed after the send).
SENT = {
    "the issue's __len: 10 when checked, 2,500 when read": (
        "local embeds = setmetatable({ e }, { __len = spy(function(n) return n == 1 and 10 or 2500 end),"
        " __index = spy(function() return e end) }) d.send(m.channel_id, { content = 'x', embeds = embeds })",
        {"content": "x", "embeds": [{"title": "e"}]},
    ),
    "embeds served by __index and __len only": (
        "d.send(m.channel_id, { content = 'x', embeds = setmetatable({}, { __len = spy(function() return 3 end),"
        " __index = spy(function() return e end) }) })",
        {"content": "x"},
    ),
    "a body proxy over a real body": (
        "local real = { content = 'x', embeds = { e } } "
        "d.send(m.channel_id, setmetatable({ content = 'raw' }, { __index = spy(function(_, _, k) return real[k] end) }))",
        {"content": "raw"},
    ),
    "__pairs that would hide or add fields": (
        "local body = setmetatable({ content = 'x' }, { __pairs = spy(function() return next, { content = 'y',"
        " embeds = { e, e, e } } end) }) d.send(m.channel_id, body)",
        {"content": "x"},
    ),
    "an embed whose __index would rewrite the body while it is read": (
        "local body = { content = 'x' } local emb = setmetatable({ title = 't' }, { __index = spy(function()"
        " body.embeds = table.create(2500, e) body.content = string.rep('z', 1e5) return 'boo' end) }) "
        "body.embeds = { emb } d.send(m.channel_id, body)",
        {"content": "x", "embeds": [{"title": "t"}]},
    ),
    "fields behind a __len that grows": (
        "local fields = setmetatable({ { name = 'a', value = 'b' } }, { __len = spy(function(n) return n * 100 end) }) "
        "d.send(m.channel_id, { embeds = { { title = 't', fields = fields } } })",
        {"embeds": [{"title": "t", "fields": [{"name": "a", "value": "b", "inline": False}]}]},
    ),
    "a footer and an author behind __index": (
        "local text = setmetatable({}, { __index = spy(function() return 'from a proxy' end) }) "
        "d.send(m.channel_id, { embeds = { { title = 't', footer = setmetatable({ text = 'f' }, getmetatable(text)),"
        " author = { name = 'a', url = text } } } })",
        {"embeds": [{"title": "t", "footer": {"text": "f"}, "author": {"name": "a"}}]},
    ),
    "frozen tables read as usual": (
        "d.send(m.channel_id, table.freeze({ content = 'x', embeds = table.freeze({ table.freeze({ title = 't',"
        " fields = table.freeze({ table.freeze({ name = 'n', value = 'v', inline = true }) }) }) }) }))",
        {"content": "x", "embeds": [{"title": "t", "fields": [{"name": "n", "value": "v", "inline": True}]}]},
    ),
    "a reply to a message proxy reads its ids raw": (
        "local msg = setmetatable({ channel_id = m.channel_id, id = m.id }, { __index = spy(function() return"
        " '1100000000000000099' end) }) d.reply(msg, 'x')",
        {"content": "x", "message_id": "1100000000000000003"},
    ),
    "the body changed after the call": (
        "local b = { content = 'x', embeds = { { title = 't' } } } d.send(m.channel_id, b) "
        "b.embeds[1].title = 'changed' b.embeds[2] = e b.content = nil",
        {"content": "x", "embeds": [{"title": "t"}]},
    ),
    "the largest body Discord takes": (
        "local embeds = {} for i = 1, 10 do local fields = {} for j = 1, 25 do fields[j] = { name = 'n', value = 'v' } end "
        "embeds[i] = { title = string.rep('t', 100), description = string.rep('d', 340), url = string.rep('u', 2048),"
        " footer = { text = 'f' }, author = { name = 'a' }, color = 0xFFFFFF, fields = fields } end "
        "d.send(m.channel_id, { content = string.rep('c', 2000), embeds = embeds, delete_after = 5 })",
        None,  # checked by its own test
    ),
}

#: Handler bodies (line 3) whose send is refused, and the message.
REFUSED = {
    "a proxy body reads as empty": (
        "d.send(m.channel_id, setmetatable({}, { __index = spy(function() return 'x' end) }))",
        "a message needs content or at least one embed",
    ),
    "content behind __tostring": (
        "d.send(m.channel_id, { content = setmetatable({}, { __tostring = spy(function() return 'x' end) }) })",
        "content must be a string, got a table",
    ),
    "an embed title behind __tostring": (
        "d.send(m.channel_id, { embeds = { { title = setmetatable({}, { __tostring = spy(function() return 't' end) }) } } })",
        "embeds[1].title must be a string, got a table",
    ),
    "a field value behind __index": (
        "d.send(m.channel_id, { embeds = { { fields = { setmetatable({ name = 'n' },"
        " { __index = spy(function() return 'v' end) }) } } } })",
        "embeds[1].fields[1].value must be a string, got nil",
    ),
    "eleven embeds": (
        "d.send(m.channel_id, { embeds = table.create(11, e) })",
        "embeds has 11 items; the limit is 10",
    ),
    "twenty-six fields": (
        "d.send(m.channel_id, { embeds = { { fields = table.create(26, { name = 'n', value = 'v' }) } } })",
        "embeds[1].fields has 26 items; the limit is 25",
    ),
    "2,500 embeds": (
        "d.send(m.channel_id, { embeds = table.create(2500, e) })",
        "the message table has more than 1103 entries; a message has at most 10 embeds of 25 fields",
    ),
    "a hundred thousand entries": (
        "local t = table.create(1e5, 'x') d.send(m.channel_id, { content = 'x', embeds = { { fields = t } } })",
        "the message table has more than 1103 entries; a message has at most 10 embeds of 25 fields",
    ),
    "more than 6000 characters across the embeds": (
        "local embeds = {} for i = 1, 2 do embeds[i] = { description = string.rep('d', 3001) } end "
        "d.send(m.channel_id, { embeds = embeds })",
        "embeds hold 6002 characters in all; the limit is 6000",
    ),
    "field text counts toward the 6000": (
        "local fields = {} for j = 1, 25 do fields[j] = { name = string.rep('n', 256), value = string.rep('v', 1024) } end "
        "d.send(m.channel_id, { embeds = { { fields = fields } } })",
        "embeds hold 32000 characters in all; the limit is 6000",
    ),
    "embeds with a hole": (
        "d.send(m.channel_id, { embeds = { [1] = e, [3] = e } })",
        "embeds must be a list without holes; item 2 is missing",
    ),
    "embeds keyed by name": (
        "d.send(m.channel_id, { embeds = { first = e } })",
        'embeds must be a list (keys 1, 2, 3...), found the key "first"',
    ),
    "a body nested a thousand deep": (
        "local t = e for i = 1, 1000 do t = { t } end d.send(m.channel_id, { embeds = t })",
        "embeds[1] has an unknown field 1 (use title, description, url, color, footer, author, fields)",
    ),
    "a misspelt key in the body": (
        "d.send(m.channel_id, { content = 'x', embed = { e } })",
        'the message table has an unknown field "embed" (use content, embeds, delete_after)',
    ),
    "a megabyte of description": (
        "d.send(m.channel_id, { embeds = { { description = string.rep('d', 1e6) } } })",
        "embeds[1].description is 1000000 characters long; the limit is 4096",
    ),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, Attack]:
    cases = {name: Case(with_discord(SPY + body + " print(calls)")) for name, (body, _) in SENT.items()}
    cases |= {name: Case(with_discord(SPY + body)) for name, (body, _) in REFUSED.items()}
    return run_attacks(cases)


@pytest.mark.parametrize("name", [name for name, (_, action) in SENT.items() if action is not None])
def test_a_builder_sends_what_the_table_holds_raw_and_calls_no_metamethod(
    runs: dict[str, Attack], name: str
) -> None:
    result = runs[name]
    result.check_witness()
    assert result.first.errors == []
    assert result.first.texts() == ["0"], "a metamethod was called"
    [action] = result.first.actions
    kind = "reply" if "reply" in name else "send"
    assert action == {"type": kind, "channel_id": CHANNEL, "script": "attack"} | SENT[name][1]


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_builder_refuses_a_bad_body_from_its_copy(runs: dict[str, Attack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    error = result.error
    assert (error.kind, error.line, error.message) == ("runtime", 3, REFUSED[name][1])
    assert result.first.actions == []


@pytest.fixture
def largest(runs: dict[str, Attack]) -> Attack:
    return runs["the largest body Discord takes"]


def test_the_largest_body_discord_takes_is_sent_whole_and_bounded(largest: Attack) -> None:
    # The most one send can hold: 10 embeds of 25 fields, 6000 characters of text, 10 long urls.
    # It goes through whole, and its JSON stays far from the megabytes a shifting __len once made.
    largest.check_witness()
    assert largest.first.errors == []
    [action] = largest.first.actions
    assert len(action["embeds"]) == 10
    assert all(len(embed["fields"]) == 25 for embed in action["embeds"])
    assert (action["content"], action["delete_after"]) == ("c" * 2000, 5)
    assert len(json.dumps(action)) < 64 * 1024
