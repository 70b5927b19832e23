"""Per-call cost of bounded pattern matching: C directly, the wrappers' fast path, the Lua engine.

Run with ``python bench/patterns.py``. Prints three tables:

1. the common calls on a 2000-character message: C, the wrapper (which sends them to C) and the
   engine, with the ratios; the wrapper's overhead is the price of the bound;
2. adversarial subjects at the largest length the wrappers still send to C: the C time there is
   the most one call can cost a worker (the budget aims at about 1 ms);
3. what loading patterns.lua and the engine costs a guild VM, in KiB.

Times are CPU time per call (``os.clock`` inside Lua), best of a few rounds.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lupa import lua54

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LUA_DIR = resources.files("lua_runtime") / "lua"

# Times one call shape: `call` is Lua code over F (the implementation), S (the subject) and P (the
# pattern). Repeats it until 50 ms have passed, keeps the best of three rounds.
TIMER = b"""function(F, S, P, call)
  local run = assert(load("local F, S, P = ...; " .. call))
  local best = math.huge
  for _ = 1, 3 do
    local reps, start = 0, os.clock()
    repeat
      run(F, S, P)
      reps = reps + 1
    until os.clock() - start > 0.05
    best = math.min(best, (os.clock() - start) / reps)
  end
  return best
end"""

# The wrappers over a counting stand-in for the C functions and an engine that does nothing, to
# find out cheaply which way a call goes.
ROUTE_PROBE = b"""
local C, patterns_factory = ...
local counts = { c = 0 }
local counted = {}
for name, f in pairs(C) do
  counted[name] = function(...) counts.c = counts.c + 1; return f(...) end
end
local idle = function() return nil end
local stub = { find = idle, match = idle, gmatch = function() return idle end, gsub = idle }
local safe = patterns_factory(counted, function() return function() return stub end end)
return function(fname, s, p)
  local before = counts.c
  if fname == "gsub" then safe.gsub(s, p, "") else safe[fname](s, p) end
  return counts.c > before
end
"""

MEMORY = b"""
local patterns_bytecode, engine_bytecode = ...
local function kib()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count")
end
local C = { find = string.find, match = string.match, gmatch = string.gmatch, gsub = string.gsub }
local load_engine = function() return load(engine_bytecode, "=pattern_engine", "b")() end
local bare = kib()
local factory = load(patterns_bytecode, "=patterns", "b")()
local loaded = kib()
local safe = factory(C, load_engine)
local ready = kib()
safe.find("a message", "%d+")
local one_pattern = kib()
safe.match(string.rep(" x", 2000), "^%s*(.-)%s*$")
local with_engine = kib()
return bare, loaded - bare, ready - loaded, one_pattern - ready, with_engine - one_pattern
"""


@dataclass(frozen=True)
class Common:
    """A common call: what the script writes, on which subject."""

    label: str
    call: str
    subject_length: int = 2000


COMMON = [
    Common("plain find", 'F.find(S, "badword", 1, true)'),
    Common("^!%w+", 'F.match(S, "^!%w+")'),
    Common("%d+", 'F.find(S, "%d+")'),
    Common("https?://[%w%.%-]+", 'F.match(S, "https?://[%w%.%-]+")'),
    Common("(%S+)", 'F.match(S, "(%S+)")'),
    Common('gsub %s+ -> " "', 'F.gsub(S, "%s+", " ")'),
    Common("gsub (%w+) -> function", 'F.gsub(S, "(%w+)", function(w) return w end)'),
    Common("gmatch %a+ (all)", 'for _ in F.gmatch(S, "%a+") do end'),
    Common("trim, 400 chars", 'F.match(S, "^%s*(.-)%s*$")', 400),
    Common("trim, 2000 chars", 'F.match(S, "^%s*(.-)%s*$")'),
]


@dataclass(frozen=True)
class Adversarial:
    """A pattern and the subject shape that makes C's backtracking worst, as Lua expressions."""

    fname: str
    pattern: str
    subject: str  # a Lua expression of n


ADVERSARIAL = [
    Adversarial("find", "a*b", 'string.rep("a", n)'),
    Adversarial("find", "a*a*b", 'string.rep("a", n)'),
    Adversarial("find", "a*a*a*b", 'string.rep("a", n)'),
    Adversarial("find", "(.-)b", 'string.rep("a", n)'),
    Adversarial("find", ".-.-b", 'string.rep("a", n)'),
    Adversarial("match", "^%s*(.-)%s*$", '"x" .. string.rep(" ", n) .. "x"'),
    Adversarial("gsub", "%s+$", 'string.rep(" ", n) .. "x"'),
    Adversarial("gmatch", "%a+%d", 'string.rep("a", n)'),
    Adversarial("find", "%b()", 'string.rep("(", n)'),
    Adversarial("find", "[%w_%-%.]*@", 'string.rep("ab", n // 2)'),
    Adversarial("find", "^(a*)(a*)b", 'string.rep("a", n)'),
    Adversarial("find", "a?a?a?a?a?a?a?a?a?a?a?a?aaaaaaaaaaaa", 'string.rep("a", n)'),
]


def message(length: int) -> bytes:
    text = b"Hey everyone, the rules are at https://example.com/rules?page=2 - read them! 42 times. "
    return (text * (length // len(text) + 1))[:length]


def dump(runtime: lua54.LuaRuntime, name: str) -> bytes:
    """The chunk as the sandbox loads it: compiled once, stripped of debug info."""
    compile_ = runtime.eval(b"function(src, name) return string.dump(assert(load(src, name, 't')), true) end")
    return compile_((LUA_DIR / f"{name}.lua").read_bytes(), b"=" + name.encode())


class Bench:
    def __init__(self) -> None:
        lua = lua54.LuaRuntime(encoding=None)
        self.lua = lua
        self.c = lua.eval(
            b"{ find = string.find, match = string.match, gmatch = string.gmatch, gsub = string.gsub }"
        )
        engine_factory = lua.execute((LUA_DIR / "pattern_engine.lua").read_bytes())
        patterns_factory = lua.execute((LUA_DIR / "patterns.lua").read_bytes())
        self.engine = engine_factory(self.c)
        load_engine = lua.eval(b"function(factory) return function() return factory end end")(engine_factory)
        self.safe = patterns_factory(self.c, load_engine)
        self.timer = lua.eval(TIMER)
        self.probe = lua.execute(ROUTE_PROBE, self.c, patterns_factory)
        self.subject_of = lua.eval(
            b"function(expr, n) return assert(load('local n = ...; return ' .. expr))(n) end"
        )

    def time(self, impl: Any, subject: bytes, call: str, pattern: bytes = b"") -> float:
        return self.timer(impl, subject, pattern, call.encode())

    def goes_to_c(self, case: Adversarial, n: int) -> bool:
        return bool(
            self.probe(case.fname.encode(), self.subject_of(case.subject.encode(), n), case.pattern.encode())
        )

    def route_limit(self, case: Adversarial) -> int:
        """The largest subject length the wrappers still send to C (bisection over the probe)."""
        fits, too_long = 0, 1
        while self.goes_to_c(case, too_long):
            fits, too_long = too_long, too_long * 2
            if too_long > 1 << 22:
                return fits
        while too_long - fits > 1:
            mid = (fits + too_long) // 2
            fits, too_long = (mid, too_long) if self.goes_to_c(case, mid) else (fits, mid)
        return fits

    def adversarial_time(self, case: Adversarial, n: int) -> float:
        subject = self.subject_of(case.subject.encode(), n)
        if case.fname == "gmatch":
            call = "for _ in F.gmatch(S, P) do end"
        elif case.fname == "gsub":
            call = 'F.gsub(S, P, "")'
        else:
            call = f"F.{case.fname}(S, P)"
        return self.time(self.c, subject, call, case.pattern.encode())


def main() -> None:
    bench = Bench()

    print("Common calls (microseconds per call)")
    header = (
        f"{'call':26} {'length':>6} {'C':>9} {'wrapper':>9} {'wrapper/C':>9} {'overhead':>9}"
        f" {'engine':>9} {'engine/C':>8}"
    )
    print(header)
    print("-" * len(header))
    for case in COMMON:
        subject = message(case.subject_length)
        c, wrapped, engine = (
            bench.time(impl, subject, case.call) * 1e6 for impl in (bench.c, bench.safe, bench.engine)
        )
        print(
            f"{case.label:26} {case.subject_length:>6} {c:>9.2f} {wrapped:>9.2f} {wrapped / c:>9.2f}"
            f" {wrapped - c:>9.2f} {engine:>9.1f} {engine / c:>8.1f}"
        )
    print("(trim on 2000 characters goes to the engine: on a hostile subject C would need ~16 ms)")

    print()
    print("Adversarial subjects at the route limit: the most one C call may cost")
    header = f"{'function':8} {'pattern':38} {'limit n':>8} {'C at limit (ms)':>16}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for case in ADVERSARIAL:
        limit = bench.route_limit(case)
        ms = bench.adversarial_time(case, limit) * 1e3
        worst = max(worst, ms)
        print(f"{case.fname:8} {case.pattern:38} {limit:>8} {ms:>16.3f}")
    print(f"worst: {worst:.3f} ms")

    print()
    print("Guild VM memory (KiB, collectgarbage('count'), chunks loaded as stripped bytecode)")
    bare, chunk, factory, first_pattern, engine = bench.lua.execute(
        MEMORY, dump(bench.lua, "patterns"), dump(bench.lua, "pattern_engine")
    )
    print(f"this benchmark's runtime before loading (not a bare guild VM): {bare:.2f}")
    print(f"patterns.lua chunk: {chunk:.2f}   factory call: {factory:.2f}   total: {chunk + factory:.2f}")
    print(f"first cached pattern: {first_pattern:.2f}   engine, once compiled: {engine:.2f}")
    print(f"(cpu: {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
