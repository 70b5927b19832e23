"""A minimal guest environment for running translated Luau, the way the sandbox does.

A fresh ``lupa.lua54`` runtime runs ``stdlib.lua`` once, then each chunk is loaded with
``load(lua_source, "=" .. name, "t", env)`` in an environment made of Lua's safe base functions and
libraries plus the stdlib's ``globals``; ``print`` formats with the stdlib's Luau ``tostring``. The
guest gets no ``debug`` and no ``load``, as in the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lupa import lua54

from lua_runtime.luau import STDLIB_PATH, translate

_SETUP = """
local std = ...
local base = {}
for _, name in ipairs({
  "assert", "error", "ipairs", "next", "pairs", "select", "rawequal", "rawget", "rawlen",
  "getmetatable", "setmetatable", "tonumber", "type", "pcall", "xpcall",
  "string", "table", "math", "utf8", "coroutine",
}) do base[name] = _G[name] end
for name, value in next, std.globals do base[name] = value end
local tostring, concat, select = std.tostring, table.concat, select

-- Runs `source` as chunk `name`: returns the printed lines, the error message if any, and the
-- table the chunk returned.
return function(source, name, marks)
  local lines = {}
  local env = setmetatable({}, { __index = base })
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    lines[#lines + 1] = concat(parts, "\\t")
  end
  -- mark(n) records (n, the line Lua reports for the call): see the line-preservation tests.
  env.mark = function(expected)
    marks[#marks + 1] = { expected, debug.getinfo(2, "l").currentline }
    return 1
  end
  local chunk, err = load(source, "=" .. name, "t", env)
  if not chunk then return lines, err end
  local ok, result = pcall(chunk)
  if not ok then return lines, tostring(result) end
  return lines, nil, result
end
"""


@dataclass
class Run:
    """What a chunk printed, the error that stopped it, the (expected, reported) mark lines, and the
    values of the array the chunk returned."""

    output: list[str]
    error: str | None
    marks: list[tuple[int, int]] = field(default_factory=list)
    returned: list[object] = field(default_factory=list)


class LuauVM:
    """One Lua 5.4 runtime with the Luau standard library loaded."""

    def __init__(self) -> None:
        self.lua = lua54.LuaRuntime(register_eval=False, unpack_returned_tuples=True)
        std = self.lua.execute(STDLIB_PATH.read_text())
        self.stdlib = std
        self._run = self.lua.execute(_SETUP, std)

    def run_lua(self, lua_source: str, name: str = "script") -> Run:
        """Runs Lua 5.4 source (already translated)."""
        marks = self.lua.table()
        lines, error, result = (*self._run(lua_source, name, marks), None, None)[:3]
        recorded = [(int(marks[i][1]), int(marks[i][2])) for i in range(1, len(marks) + 1)]
        is_table = result is not None and lua54.lua_type(result) == "table"
        returned = [result[i] for i in range(1, len(result) + 1)] if is_table else []
        return Run(list(lines.values()), error, recorded, returned)

    def run(self, luau_source: str, name: str = "script") -> Run:
        """Translates and runs Luau source."""
        return self.run_lua(translate(luau_source), name)
