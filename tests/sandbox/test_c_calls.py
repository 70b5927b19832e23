"""C library calls charged by the work they do (issue #16), in real guild VMs.

No hook interrupts a C function, so one C call whose work is not bounded by what it allocates
(`string.rep("", 2^53)` looped 2^53 times to make "", `table.move({}, 1, 2^31 - 2, 2)` moved two
billion nils) froze its worker for as long as it liked. Every such call is now either split into C
calls of bounded size with the budget checked between them (lua_runtime/lua/c_calls.lua and
long_calls.lua), or refused with an error that says why. These scripts try every way found to make
one C call long: huge ranges, __len and sparse tables with a huge border, metamethods that are C
functions or chains of tables, strings that are slow to compare, long formats, replacements that
expand to nothing. Each runs in a child process with a CPU allowance (tests/sandbox/attack.py), so a
call that still runs away fails its test; the witness script must still be served after each.
The slices must also give the very results C gives: the last part checks them.
"""

from __future__ import annotations

import random

import pytest
from lupa import lua54

from lua_runtime.limits import MiB, SandboxLimits
from lua_runtime.luau import STDLIB_PATH
from lua_runtime.sandbox import _bytecode
from tests.sandbox.attack import Attack, Case, assert_stopped, handler, run_attacks

#: Builds a table whose border (#t, rawlen) is 2^50 with 51 elements: the powers of two go to the
#: hash part, then t[1] takes a free node there, and the length search doubles from 1 to 2^50.
SPARSE = "local t = {} for k = 1, 50 do t[2^k] = true end t[1] = true"

#: Builds `t`, whose every read goes through a chain of 1,900 __index tables ending in a C function:
#: C follows the chain with no Lua instruction, about 15 µs an element.
CHAIN = (
    "local t = {} local last = t for i = 1, 1900 do local n = {} setmetatable(last, { __index = n }) last = n end"
    " setmetatable(last, { __index = type })"
)

#: Handler bodies (line 2) whose one C call, as C would make it, runs for minutes or forever: each must
#: end with the time limit (or, where it also allocates, the memory limit).
UNBOUNDED = {
    "table.move of an empty range of 2^31 elements": "table.move({}, 1, 2^31 - 2, 2)",
    "table.move up to the largest integer": "table.move({}, 1, math.maxinteger, 1)",
    "table.move downwards over 2^40 elements": "table.move({}, 2, 2^40, 1)",
    "table.move to another table": "table.move({}, 1, 2^40, 1, {})",
    "table.move through C metamethods": (
        "table.move(setmetatable({}, { __index = rawget, __newindex = rawset }), 1, 2^40, 2)"
    ),
    "table.move through a chain of __index tables": f"{CHAIN} table.move(t, 1, 2^20, 1, {{}})",
    "table.move from a string": "table.move('abc', 1, 2^40, 1, {})",
    "table.insert at the front of a border of 2^50": f"{SPARSE} table.insert(t, 1, 'x')",
    "table.insert through a C __index": (
        f"{SPARSE} setmetatable(t, {{ __index = rawget, __newindex = rawset }}) table.insert(t, 2, 'x')"
    ),
    "table.remove from the front of a border of 2^50": f"{SPARSE} table.remove(t, 1)",
    "table.sort of a border of two billion": (
        "local t = {} for k = 1, 30 do t[2^k] = 1 end t[1] = 1 t[2^31 - 2] = 1 table.sort(t)"
    ),
    "table.concat through a C __index": "table.concat(setmetatable({}, { __index = type }), '', 1, 1e9)",
    "table.concat through a chain of __index tables": f"{CHAIN} table.concat(t, '', 1, 1e6)",
    "table.unpack through a chain of __index tables": f"{CHAIN} local n = select('#', table.unpack(t, 1, 8000))",
    "table.sort of 60,000 numbers, again and again": (
        "local t = {} for i = 1, 6e4 do t[i] = (i * 7919) % 60013 end while true do table.sort(t) end"
    ),
    "table.sort of strings of NUL bytes": (
        "local z = string.rep('\\0', 2000) local t = {} for i = 1, 400 do t[i] = z .. string.char(i % 256) end"
        " while true do table.sort(t) end"
    ),
    "table.sort of strings of NUL bytes, by a comparator": (
        "local z = string.rep('\\0', 2000) local t = {} for i = 1, 400 do t[i] = z .. string.char(i % 256) end"
        " while true do table.sort(t, function(a, b) return a > b end) end"
    ),
    "string.rep of an empty string, again and again": "while true do local s = string.rep('', 2^53) end",
    "string.rep with an empty separator, again and again": (
        "while true do local s = string.rep('', 2^53, '') end"
    ),
    "string.gsub of empty captures into a long replacement": (
        "print(string.rep('b', 1e4):gsub('(x*)', string.rep('%1', 1e5)))"
    ),
    "string.gsub of empty matches into a long replacement": (
        "print(string.rep('b', 1e4):gsub('', string.rep('%0', 1e5)))"
    ),
    "string.gsub of empty captures, up to a count": (
        "print(string.rep('b', 1e4):gsub('()', string.rep('%1', 1e5), 5000))"
    ),
    "os.date of a long format, again and again": "local f = string.rep('%c', 2e4) while true do os.date(f) end",
    "string.format of a long format, again and again": (
        "local f = string.rep('%%', 3e5) while true do local s = string.format(f) end"
    ),
    "string.format's %q of control characters": (
        "local s = string.rep('\\1', 3e5) while true do local q = string.format('%q', s) end"
    ),
    "tonumber of a long string, again and again": (
        "local s = string.rep('0', 2e6) while true do local n = tonumber(s) end"
    ),
    "print of a long string, again and again": "local s = string.rep('x', 2e6) while true do print(s) end",
    "string.pack with a large size, again and again": "while true do local s = string.pack('c1000000', '') end",
    "utf8.codes' iterator in a long run of continuation bytes": (
        "local s = 'a' .. string.rep('\\x80', 2e6) local f = utf8.codes(s) while true do f(s, 1) end"
    ),
    "an exhausted gmatch iterator, again and again": (
        "local it = string.rep('a', 50000):gmatch('b') while true do it() end"
    ),
}


#: Handler bodies (line 2) whose arguments are refused at once, with the message.
REFUSED = {
    "table.unpack of 8,001 values": (
        "print(table.unpack({}, 1, 8001))",
        "too many results to unpack (at most 8000 values)",
    ),
    "the global unpack of ten million values": (
        "print(unpack({}, 1, 1e7))",
        "too many results to unpack (at most 8000 values)",
    ),
    "string.byte of 9,000 bytes": (
        "print(string.byte(string.rep('x', 9000), 1, -1))",
        "string slice too long (string.byte returns at most 8000 values)",
    ),
    "string.byte of 9,000 bytes by method, from the end": (
        "print(string.rep('x', 20000):byte(-9000, -1))",
        "string slice too long (string.byte returns at most 8000 values)",
    ),
    "utf8.codepoint of 9,000 bytes": (
        "print(utf8.codepoint(string.rep('x', 9000), 1, -1))",
        "string slice too long (utf8.codepoint takes at most 8000 bytes)",
    ),
    "string.pack of a million options": (
        "print(string.pack(string.rep('i', 1e6)))",
        "invalid argument #1 to 'pack' (format longer than 8000 bytes)",
    ),
    "string.packsize of 100,000 '!'": (
        "print(string.packsize(string.rep('!', 1e5)))",
        "invalid argument #1 to 'packsize' (format longer than 8000 bytes)",
    ),
    "string.unpack of 9,000 options": (
        "print(string.unpack(string.rep('b', 9000), string.rep('x', 9000)))",
        "invalid argument #1 to 'unpack' (format longer than 8000 bytes)",
    ),
    "table.insert into a table whose __len is hidden by __metatable": (
        "table.insert(setmetatable({}, { __len = function() return 2^50 end, __metatable = false }), 1, 'x')",
        "table.insert does not accept a table with a __len metamethod",
    ),
    "table.sort of a table whose __len is hidden by __metatable": (
        "table.sort(setmetatable({}, { __len = function() return 2^40 end, __metatable = 'locked' }))",
        "table.sort does not accept a table with a __len metamethod",
    ),
    "string.rep of 2^40 bytes": ("print(#string.rep('x', 2^40))", "resulting string too large"),
    "string.rep of a count with no integer value": (
        "print(string.rep('', 0.5))",
        "bad argument #2 to 'rep' (number has no integer representation)",
    ),
    "table.move beyond the integers": (
        "table.move({}, -2^62, 2^62, 1)",
        "bad argument #3 to 'move' (too many elements to move)",
    ),
    "table.move to beyond the largest integer": (
        "table.move({}, 1, 2^40, math.maxinteger - math.tointeger(10))",
        "bad argument #4 to 'move' (destination wrap around)",
    ),
    "table.unpack of a border of 2^50": (
        f"{SPARSE} print(unpack(t))",
        "too many results to unpack (at most 8000 values)",
    ),
    "table.sort with a comparator that is not a function": (
        "local t = {} for i = 1, 9000 do t[i] = i end table.sort(t, 5)",
        "bad argument #2 to 'sort' (function expected, got number)",
    ),
    "string.format with a bad argument past a segment": (
        "local t = {} for i = 1, 600 do t[i] = i end t[590] = {} print(string.format(string.rep('%d', 600), unpack(t)))",
        "bad argument #591 to 'format' (number expected, got table)",
    ),
    "os.date with an unknown conversion at the end of a long format": (
        "print(os.date(string.rep('%Y', 5000) .. '%Ez'))",
        "bad argument #1 to 'date' (invalid conversion specifier '%Ez')",
    ),
}


@pytest.fixture(scope="module")
def unbounded() -> dict[str, Attack]:
    return run_attacks({name: Case(handler(body)) for name, body in UNBOUNDED.items()})


@pytest.fixture(scope="module")
def refused() -> dict[str, Attack]:
    return run_attacks({name: Case(handler(body)) for name, (body, _) in REFUSED.items()})


@pytest.mark.parametrize("name", list(UNBOUNDED))
def test_a_c_call_without_a_bound_ends_within_the_budget(unbounded: dict[str, Attack], name: str) -> None:
    result = unbounded[name]
    result.check_witness()
    error = result.error
    assert error is not None, "the call finished: it was expected to run past the budget"
    assert_stopped(error, "time_limit" if error.kind == "time_limit" else "memory_limit")
    assert error.line == 2


@pytest.mark.parametrize("name", list(REFUSED))
def test_arguments_that_would_make_a_c_call_unbounded_are_refused_at_once(
    refused: dict[str, Attack], name: str
) -> None:
    result = refused[name]
    result.check_witness()
    assert result.error is not None
    assert (result.error.kind, result.error.line, result.error.message) == ("runtime", 2, REFUSED[name][1])


def test_sorting_numbers_and_a_string_in_slices_fails_as_c_does() -> None:
    # 20,000 elements take the merge sort, whose runs C sorts: C's own error, at the script's line.
    result = run_attacks(
        {"mixed": Case(handler("local t = {} for i = 1, 20000 do t[i] = i end t[14500] = 'x' table.sort(t)"))}
    )
    mixed = result["mixed"]
    mixed.check_witness()
    assert mixed.error is not None and (mixed.error.kind, mixed.error.line) == ("runtime", 2)
    assert mixed.error.message in (
        "attempt to compare number with string",
        "attempt to compare string with number",
    )


def test_sorting_strings_of_megabytes_of_nul_bytes_is_charged_by_the_bytes_compared() -> None:
    # strcoll runs once per NUL byte: C compared two 4 MB strings of NULs in 30 ms, and sorted 300
    # of them for minutes. The same string 300 times costs nothing to compare (it is the same
    # string); two strings that differ only at their end cost their length, in slices.
    same = "local z = string.rep('\\0', 4e6) local t = {} for i = 1, 300 do t[i] = z end table.sort(t) print(#t[300])"
    different = (
        "local a, b = string.rep('\\0', 4e6) .. 'a', string.rep('\\0', 4e6) .. 'b'"
        " local t = {} for i = 1, 300 do t[i] = i % 2 == 0 and a or b end table.sort(t)"
    )
    by_comparator = different.replace("table.sort(t)", "table.sort(t, function(x, y) return x < y end)")
    limits = SandboxLimits(cpu_ms_per_event=50, max_memory=24 * MiB)
    runs = run_attacks(
        {
            name: Case(handler(body))
            for name, body in [("same", same), ("different", different), ("by", by_comparator)]
        },
        limits,
    )
    for result in runs.values():
        result.check_witness()
    assert runs["same"].first.texts() == ["4000000"]
    assert_stopped(runs["different"].error, "time_limit", limits)
    assert_stopped(runs["by"].error, "time_limit", limits)


# The slices give C's own results --------------------------------------------------------------------

#: Handler bodies (line 2) that take the sliced paths, and what they print (what C prints).
RESULTS = {
    "string.rep of short units into a long string": (
        "local s = string.rep('ab', 50000, ',') print(#s, s:sub(1, 8), s:sub(-5), #string.rep('xyz', 3e5))",
        "149999\tab,ab,ab\tab,ab\t900000",
    ),
    "string.rep of empty units": (
        "print(#string.rep('', 2^53), #string.rep('', 1e15, ''), string.rep('x', 0), string.rep('x', -3), 'end')",
        "0\t0\t\t\tend",
    ),
    "table.move up, overlapping": (
        "local t = {} for i = 1, 1e5 do t[i] = i end table.move(t, 1, 99999, 2)"
        " print(t[1], t[2], t[50000], t[100000], #t)",
        "1\t1\t49999\t99999\t100000",
    ),
    "table.move down, overlapping": (
        "local t = {} for i = 1, 1e5 do t[i] = i end table.move(t, 2, 1e5, 1) print(t[1], t[50000], t[99999], t[100000])",
        "2\t50001\t100000\t100000",
    ),
    "table.move into another table, through metamethods": (
        "local log = 0 local dst = setmetatable({}, { __newindex = function(t, k, v) log += 1 rawset(t, k, v * 2) end })"
        " local src = setmetatable({}, { __index = function(_, k) return k end })"
        " local r = table.move(src, 1, 5000, 11, dst) print(r == dst, log, dst[11], dst[5010], dst[10], dst[5011])",
        "true\t5000\t2\t10000\tnil\tnil",
    ),
    "table.insert and remove at the front of 40,000 elements": (
        "local t = {} for i = 1, 4e4 do t[i] = i end table.insert(t, 1, 0) print(#t, t[1], t[2], t[40001])"
        " print(table.remove(t, 1), #t, t[1], t[40000], t[40001]) print(table.remove(t), #t)",
        "40001\t0\t1\t40000\n0\t40000\t1\t40000\tnil\n40000\t39999",
    ),
    "table.concat of 40,000 numbers and strings": (
        "local t = {} for i = 1, 4e4 do t[i] = i % 2 == 0 and i / 2 or 'x' end t[40000] = 0.25"
        " local s = table.concat(t, ',') print(#s, s:sub(1, 12), s:sub(-9))",
        "148892\tx,1,x,2,x,3,\t99,x,0.25",
    ),
    "table.unpack of 7,000 values through __index": (
        "local t = setmetatable({}, { __index = function(_, k) return k * 2 end })"
        " local n = select('#', table.unpack(t, 1, 7000)) print(n, select(7000, table.unpack(t, 1, 7000)))",
        "7000\t14000",
    ),
    "table.sort of 20,000 numbers": (
        "local t = {} for i = 1, 2e4 do t[i] = (i * 7919) % 20011 end table.sort(t)"
        " local ok = true for i = 2, #t do ok = ok and t[i - 1] <= t[i] end print(ok, t[1], t[20000])",
        "true\t1\t20010",
    ),
    "table.sort of 20,000 numbers, descending": (
        "local t = {} for i = 1, 2e4 do t[i] = (i * 7919) % 20011 end table.sort(t, function(a, b) return a > b end)"
        " local ok = true for i = 2, #t do ok = ok and t[i - 1] >= t[i] end print(ok, t[1], t[20000])",
        "true\t20010\t1",
    ),
    "table.sort of long strings that differ late": (
        "local z = string.rep('\\0', 70000) local t = {} for i = 1, 50 do t[i] = z .. string.char(100 - i) end"
        " t[51] = z table.sort(t) print(#t[1], t[2]:byte(-1), t[51]:byte(-1))",
        "70000\t50\t99",
    ),
    "table.sort of a table with a metatable": (
        "local t = {} for i = 1, 500 do t[i] = 501 - i end"
        " setmetatable(t, { __newindex = function() error('a new key') end }) table.sort(t) print(t[1], t[250], t[500])",
        "1\t250\t500",
    ),
    "table.sort of a frozen table": (
        "local t = table.freeze({ 3, 2, 1 }) print(pcall(table.sort, t))",
        "false\tattempt to modify a readonly table",
    ),
    "utf8.codes over a long string": (
        "local s = string.rep('aé€😀', 2e4) local n, sum = 0, 0 for p, c in utf8.codes(s) do n += 1 sum += c end"
        " print(n, sum, #s)",
        "80000\t2744120000\t200000",
    ),
    "os.date of a long format": (
        "local s = os.date('!' .. string.rep('%Y-', 5000), 0) print(#s, s == string.rep('1970-', 5000))",
        "25000\ttrue",
    ),
    "string.format of 600 values": (
        "local t = {} for i = 1, 600 do t[i] = i / 2 end local s = string.format(string.rep('%s;', 600), unpack(t))"
        " print(#s, s:sub(1, 10), s:sub(-8))",
        "2782\t0.5;1;1.5;\t9.5;300;",
    ),
}


RESULT_LIMITS = SandboxLimits(cpu_ms_per_event=150, max_memory=4 * MiB)


@pytest.fixture(scope="module")
def results() -> dict[str, Attack]:
    # A generous budget: these check results, not limits.
    return run_attacks({name: Case(handler(body)) for name, (body, _) in RESULTS.items()}, RESULT_LIMITS)


@pytest.mark.parametrize("name", list(RESULTS))
def test_a_call_in_slices_gives_what_one_c_call_gives(results: dict[str, Attack], name: str) -> None:
    result = results[name]
    result.check_witness()
    assert result.error is None, result.error
    assert "\n".join(result.first.texts()) == RESULTS[name][1]


def test_quoting_a_long_string_in_slices_gives_c_s_quoting() -> None:
    # %q writes a control character followed by a digit as \ddd: the slices must never split
    # such a pair. Random strings dense in both, compared with C's own %q, byte for byte.
    runtime = lua54.LuaRuntime(encoding=None)
    c_format = runtime.eval("string.format")
    runtime.execute(STDLIB_PATH.read_bytes(), lambda name: _bytecode(name.decode()), lambda: None)
    luau_format = runtime.eval("string.format")
    rng = random.Random(16)
    alphabet = b'\x00\x01\x1f\x7f0123456789\n\r\\"abc\xff'
    for length in (16383, 16384, 16385, 40000):
        subject = bytes(rng.choice(alphabet) for _ in range(length))
        assert luau_format(b"%q", subject) == c_format(b"%q", subject)
    boundary = b"a" * 16383 + b"\x01" + b"7" * 10
    assert luau_format(b"%q|%s", boundary, b"x") == c_format(b"%q|%s", boundary, b"x")
