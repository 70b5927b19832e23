"""Attacks through C functions: pathological patterns, and library calls that loop inside C.

A count hook never interrupts a C function, and checks the clock only every HOOK_PERIOD Lua
instructions. Pattern matching is guarded (patterns.lua bounds the C matcher's work and hands risky
calls to the interruptible pattern_engine.lua); these scripts check that every pathological pattern
ends within the event budget, and look for C calls whose work is not bounded by the heap: a loop
inside one C call, or a Lua loop of expensive C calls between two hook checks. Each runs in a child
process with a CPU allowance of a few seconds, so a call that runs away fails its test.
"""

from __future__ import annotations

import pytest

from lua_runtime.limits import SandboxLimits
from tests.sandbox.attack import Attack, Case, assert_stopped, attack, handler, run_attacks

#: Handler bodies (line 2) with a pathological pattern, and the line each prints when the call is
#: left to finish; None for a loop that never ends. Every one of them may instead be stopped by
#: the time limit (the pattern engine is slower than C): what it may not do is overrun the budget.
PATTERNS: dict[str, tuple[str, str | None]] = {
    "a*a*...a*b over 30,000 a's": ("print(string.rep('a', 30000):find(string.rep('a*', 8) .. 'b'))", "nil"),
    "a*a*a*b with match": ("print(string.rep('a', 5000):match('a*a*a*b'))", "nil"),
    ".-.-.-b": ("print(string.rep('a', 20000):find('.-.-.-b'))", "nil"),
    "[ab]*[ab]*[ab]*c": ("print(string.rep('ab', 15000):find('[ab]*[ab]*[ab]*c'))", "nil"),
    ".*.*=.*": ("print(string.rep('x', 100000):find('.*.*=.*'))", "nil"),
    "a?^22 a^22": ("print(string.rep('a', 22):match(string.rep('a?', 22) .. string.rep('a', 22)))", "a" * 22),
    "back-references": ("print(string.rep('a', 30000):find('(a*)%1%1b'))", "nil"),
    "32 lazy captures": (
        "print(select('#', string.rep('a', 40000):match(string.rep('(.-)', 32) .. 'b')))",
        "1",
    ),
    "%b() over 100,000 unbalanced parentheses": ("print(string.rep('(', 100000):find('%b()'))", "nil"),
    "%b() in gmatch": (
        "local n = 0 for x in string.rep('(', 20000):gmatch('%b()') do n += 1 end print(n)",
        "0",
    ),
    "100 frontiers": ("print(string.rep('a', 30000):find(string.rep('%f[%a]', 100) .. 'b'))", "nil"),
    "quadratic trim with gsub": ("print(#(string.rep('a ', 50000)):gsub('%s+$', ''))", "99999"),
    "the usual trim": (
        "print(#(string.rep(' ', 50000) .. 'x' .. string.rep(' ', 50000)):match('^%s*(.-)%s*$'))",
        "1",
    ),
    "number pattern, number subject": (
        "print(string.find(string.rep('1', 20000), 1 .. string.rep('1*', 5) .. 2))",
        "nil",
    ),
    "float init": ("print(string.rep('a', 30000):find(string.rep('a*', 8) .. 'b', 1.0))", "nil"),
    "a risky pattern, again and again": (
        "while true do string.rep('a', 300):find(string.rep('a*', 4) .. 'b') end",
        None,
    ),
    "gmatch over 100 KB": (
        "local n = 0 for w in string.rep('word ', 20000):gmatch('%a+') do n += 1 end print(n)",
        "20000",
    ),
    "gsub over 100 KB": ("local s, n = string.rep('word ', 20000):gsub('%a+', 'x') print(n)", "20000"),
}

#: Handler bodies (line 2) with a pattern C refuses, and the error it raises, at once.
BAD_PATTERNS = {
    "33 captures": ("print(string.find(string.rep('a', 40), string.rep('(a)', 33)))", "too many captures"),
    "250 optional items": (
        "print(string.find(string.rep('a', 1000), string.rep('a?', 250) .. string.rep('a', 250)))",
        "pattern too complex",
    ),
    "malformed pattern": ("print(('x'):find('%'))", "malformed pattern (ends with '%')"),
}

#: Handler bodies (line 2) calling C library functions with hostile arguments, and the runtime
#: error each must end in, at once.
C_CALLS = {
    "string.format width of 99999": (
        "print(string.format('%99999d', 1))",
        "invalid conversion specification: '%99999d'",
    ),
    "string.rep beyond any size": (
        "print(#string.rep('x', 1e6, string.rep(',', 1e6)))",
        "resulting string too large",
    ),
    "string.pack of a 17-byte integer": (
        "print(string.pack('i17', 1))",
        "integral size (17) out of limits [1,16]",
    ),
    "table.sort with an inconsistent comparator": (
        "local t = {} for i = 1, 1000 do t[i] = i % 7 end table.sort(t, function() return true end)",
        "invalid order function for sorting",
    ),
    "table.concat of a table with a table inside": (
        "print(table.concat({ 'a', {}, 'c' }))",
        "invalid value (table) at index 2 in table for 'concat'",
    ),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, Attack]:
    cases = {name: Case(handler(body)) for name, (body, _) in (PATTERNS | BAD_PATTERNS | C_CALLS).items()}
    return run_attacks(cases)


@pytest.mark.parametrize("name", list(PATTERNS))
def test_a_pathological_pattern_ends_within_the_budget(runs: dict[str, Attack], name: str) -> None:
    printed = PATTERNS[name][1]
    result = runs[name]
    result.check_witness()
    if printed is None or result.error is not None:
        assert_stopped(result.error, "time_limit")
        assert result.error.line == 2
    else:
        assert result.first.texts() == [printed]


@pytest.mark.parametrize("name", list(BAD_PATTERNS))
def test_a_pattern_c_refuses_fails_at_once_with_the_c_message(runs: dict[str, Attack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    assert result.error is not None
    assert (result.error.kind, result.error.line, result.error.message) == (
        "runtime",
        2,
        BAD_PATTERNS[name][1],
    )


@pytest.mark.parametrize("name", list(C_CALLS))
def test_a_hostile_c_call_fails_at_once_with_its_reason(runs: dict[str, Attack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    assert result.error is not None
    assert (result.error.kind, result.error.line, result.error.message) == ("runtime", 2, C_CALLS[name][1])


def test_a_pattern_that_is_only_an_error_stays_one() -> None:
    # The analysis in patterns.lua refuses malformed patterns, which then take the engine: the error
    # must still be the C function's own, at the script's line.
    result = attack(handler("print(pcall(string.find, 'abc', '[a'))"))
    assert result.first.texts() == ["false\tmalformed pattern (missing ']')"]


# C calls out of the hook's reach --------------------------------------------------------------------

HUGE_LEN = "setmetatable({}, { __len = function() return 2^50 end })"


@pytest.mark.parametrize(
    "body",
    [
        "table.move({}, 1, 2^50, 2)",
        f"table.insert({HUGE_LEN}, 1, 'x')",
        f"table.remove({HUGE_LEN}, 1)",
    ],
    ids=["table.move", "table.insert", "table.remove"],
)
def test_table_functions_over_a_huge_range_end_within_the_budget(body: str) -> None:
    # These loop inside C over the range they are given (move: e - f; insert and remove: #t, which
    # honours __len): a range of 2^50 over an empty table allocated nothing and never returned.
    result = attack(handler(body))
    assert result.error is not None and result.error.kind in ("time_limit", "runtime")
    assert result.error.line == 2


def test_string_split_with_a_long_separator_ends_within_the_budget() -> None:
    # Luau's split used C's plain find, whose search is O(#s * #sep): one call on 1 MB with a
    # 0.5 MB separator ran about 14 s inside C.
    result = attack(handler("print(#string.rep('a', 1e6):split(string.rep('a', 5e5) .. 'b'))"))
    assert result.error is None or result.error.kind == "time_limit"


#: Loops of C calls that each take milliseconds at the default 16 MiB heap. The hook checks the
#: clock every HOOK_PERIOD Lua instructions, and such a loop makes about 2,000 calls in between:
#: unchecked, each of these ran 2 to 17 s of CPU for a 100 ms budget.
COSTLY_C_LOOPS = {
    "table.sort": "local t = {} for i = 1, 5e5 do t[i] = i end while true do table.sort(t) end",
    "string.rep": "while true do local s = string.rep('x', 4e6) end",
    "string.upper": "local s = string.rep('x', 4e6) while true do local u = s:upper() end",
    "string.reverse": "local s = string.rep('x', 4e6) while true do local u = s:reverse() end",
    "utf8.len": "local s = string.rep('a', 4e6) while true do local n = utf8.len(s) end",
    "table.concat": "local t = table.create(1e5, 'ab') while true do local s = table.concat(t) end",
}


@pytest.mark.parametrize("body", list(COSTLY_C_LOOPS.values()), ids=list(COSTLY_C_LOOPS))
def test_a_loop_of_costly_c_calls_ends_near_the_budget(body: str) -> None:
    limits = SandboxLimits(cpu_ms_per_event=50)
    result = attack(handler(body), limits=limits)
    assert_stopped(result.error, "time_limit", limits)


@pytest.mark.parametrize(
    "body",
    [
        "local f = string.rep('%c', 2e5) while true do pcall(os.date, f) end",
        "local s = string.rep('a', 4e6) while true do local t = s:sub(2) end",
        "local s = string.rep('a', 2e6) while true do local t = s:format() end",
        "local t = table.create(7999, 1) while true do local n = select('#', table.unpack(t)) end",
        "local t = {} for i = 1, 65000 do t[i] = i end while true do table.sort(t) end",
    ],
    ids=["os.date", "string.sub", "string.format", "table.unpack", "table.sort under the threshold"],
)
def test_a_loop_of_c_calls_charged_by_input_size_ends_near_the_budget(body: str) -> None:
    limits = SandboxLimits(cpu_ms_per_event=50)
    result = attack(handler(body), limits=limits)
    assert_stopped(result.error, "time_limit", limits)


def test_a_script_cannot_blind_the_pattern_guard_by_replacing_string_byte() -> None:
    # patterns.lua is compiled on first use and read string.byte from the library table then: a
    # script that had replaced it blinded the analysis, and a catastrophic pattern went to C. The
    # replacement runs under pcall, so the script loads whether library writes raise or not.
    result = attack(
        "local real_byte = string.byte\n"
        "pcall(function()\n"
        "  string.byte = function(s, i, j)\n"
        "    local bytes = { real_byte(s, i, j) }\n"
        "    for k, b in bytes do if b == 42 then bytes[k] = 65 end end -- hide every '*'\n"
        "    return unpack(bytes)\n"
        "  end\n"
        "end)\n"
        "return { message = function() print(string.rep('a', 2000):find(string.rep('a*', 4) .. 'b')) end }"
    )
    assert_stopped(result.error, "time_limit")


def test_a_pattern_whose_bound_overflows_the_integers_still_takes_the_engine() -> None:
    # patterns.lua's bound was computed in integers where it does not involve the subject's length:
    # 64 optional items doubled it 64 times, it wrapped around to -1, and the exponential pattern
    # went to the C matcher.
    result = attack(handler("print(string.rep('a', 40):find(string.rep('a?', 64) .. 'b'))"))
    assert_stopped(result.error, "time_limit")
