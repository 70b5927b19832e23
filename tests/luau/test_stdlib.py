"""stdlib.lua on its own: the contract with the sandbox, its memory cost, and the parts of Luau's
library whose behaviour is not visible in the corpus."""

from __future__ import annotations

from lupa import lua54

from lua_runtime.luau import STDLIB_PATH
from tests.luau.harness import LuauVM

#: Bytes stdlib.lua may add to a fresh VM, measured as the sandbox loads it (stripped bytecode).
#: The measured figure is about 25.5 KiB; this bound catches a regression (the count is exact, not
#: noisy, for a given Lua build).
MEMORY_BOUND = 28 * 1024


def stdlib_cost(runtime: lua54.LuaRuntime, chunk: bytes, mode: str) -> float:
    count = runtime.eval("function() collectgarbage() collectgarbage() return collectgarbage('count') end")
    runtime.execute("KEEP = false")
    before = count()
    result = runtime.eval(f"function(c) return assert(load(c, '=luau_stdlib', '{mode}'))() end")(chunk)
    runtime.eval("function(v) KEEP = v end")(result)
    del result
    return (count() - before) * 1024


def test_memory_cost_per_vm_stays_within_bound() -> None:
    compiler = lua54.LuaRuntime(encoding=None)
    dump = compiler.eval("function(src) return string.dump(assert(load(src, '=luau_stdlib', 't')), true) end")
    bytecode = dump(STDLIB_PATH.read_bytes())
    assert stdlib_cost(lua54.LuaRuntime(), bytecode, "b") <= MEMORY_BOUND


def test_returns_globals_and_tostring_and_extends_libraries_in_place() -> None:
    runtime = lua54.LuaRuntime()
    runtime.execute("ORIGINAL_STRING = string")
    std = runtime.execute(STDLIB_PATH.read_text())
    assert runtime.eval("rawequal(string, ORIGINAL_STRING) and getmetatable('').__index == string")
    names = set(std.globals.keys())
    assert {
        "typeof",
        "unpack",
        "bit32",
        "rawset",
        "tostring",
        "__luau_iter",
        "__luau_str",
        "__luau_cat",
        "__luau_mod",
    } <= names
    assert std.tostring(10 / 2) == "5"
    for library, name in [("string", "split"), ("table", "find"), ("table", "freeze"), ("math", "clamp")]:
        assert runtime.eval(f"type({library}.{name})") == "function"
    assert runtime.eval('("a,b"):split(",")[2]') == "b"


def test_guest_without_debug_or_load_can_use_everything() -> None:
    # The harness's guest environment has neither `debug` nor `load`: bit32 is compiled lazily
    # through the stdlib's own captured `load`.
    source = "print(debug, load, bit32.bxor(6, 3), table.isfrozen(table.freeze({})), math.round(-2.5))"
    assert LuauVM().run(source).output == ["nil\tnil\t5\ttrue\t-3"]


def test_frozen_table_refuses_every_write_and_reads_through() -> None:
    source = """
local t = table.freeze({ 2, 1, x = 3 })
local attempts = {
\tfunction() t.x = 1 end,
\tfunction() t.new = 1 end,
\tfunction() t[1] = 0 end,
\tfunction() rawset(t, "x", 1) end,
\tfunction() table.insert(t, 3) end,
\tfunction() table.remove(t) end,
\tfunction() table.sort(t) end,
\tfunction() table.clear(t) end,
}
local refused = 0
for _, attempt in attempts do
\tlocal ok, message = pcall(attempt)
\tif not ok and string.find(message, "attempt to modify a readonly table", 1, true) then refused += 1 end
end
print(refused, #attempts, t.x, #t, t[2], table.concat(t, ","), select("#", unpack(t)))
"""
    assert LuauVM().run(source).output == ["8\t8\t3\t2\t1\t2,1\t2"]


def test_weak_frozen_registry_does_not_keep_tables_alive() -> None:
    vm = LuauVM()
    before = vm.lua.eval("function() collectgarbage() return collectgarbage('count') end")
    vm.run("for i = 1, 2000 do table.freeze({ i }) end")
    assert before() - vm.lua.eval("collectgarbage('count')") > -64  # KiB: the 2000 tables are gone


def test_split_with_long_separators_matches_plain_search() -> None:
    # Separators longer than 64 bytes are searched block by block (so that no C call does
    # unbounded work); the result must not change.
    source = """
local long = string.rep("ab%.[", 20)
local near = string.sub(long, 1, 99) .. "Q"
local function show(t) return #t .. ":" .. table.concat(t, "|") end
print(show(("x" .. long .. "y" .. long .. "z"):split(long)))
print(show(("1" .. long .. long):split(long)), show(long:split(long)), show(("a"):split(long)))
print(show(("x" .. near .. long .. "z"):split(long)) == "2:x" .. near .. "|z")
"""
    assert LuauVM().run(source).output == ["3:x|y|z", "3:1||\t2:|\t1:a", "true"]
