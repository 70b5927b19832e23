-- The guest's versions of the C library functions whose work grows with their arguments.
--
-- No hook interrupts a C function: the sandbox's count hook sees only Lua instructions, so one C
-- call over a huge range runs to its end, however long that is. Every function here is charged by
-- the work it actually does: it checks the event's CPU budget (the kernel's charge()) before each
-- slice of a bounded size, splitting its work into several C calls where it must, or it refuses
-- the arguments that would make it unbounded, with an error that says why. A C call does at most
-- about a millisecond of work between two checks (costs measured on the development machine):
--   string.rep        an empty string repeated 2^53 times made C loop 2^53 times: it is "" at once.
--                     A long result is built from blocks (C copies one unit at a time, 3 ns each).
--   table.move, insert, remove, concat, unpack
--                     go through their range in slices of PLAIN_SLICE elements, or META_SLICE for
--                     a table with a metatable: C reads and writes every element through __index
--                     and __newindex, which may be C functions or a chain of 2,000 tables that no
--                     Lua instruction is part of.
--   table.sort        sorts in C what costs C at most SORT_BUDGET steps. Longer arrays, arrays of
--                     long strings (strcoll runs once per NUL byte: comparing two 4 MB strings of
--                     NULs takes 30 ms) and tables with metatables are merge-sorted in Lua.
--   string.byte, utf8.codepoint, table.unpack
--                     return at most MAX_RESULTS values, as Luau's stack allows (Lua's takes a
--                     million, 20 ms to push, and as long again for every call they are passed to).
--   string.pack, packsize, unpack
--                     take formats of at most MAX_PACK_FORMAT bytes: C parses a format option by
--                     option, output or not ("!" repeated ten million times took 55 ms).
--   os.date           formats a long format in segments (strftime takes 50 ns a byte of format).
--   upper, lower, reverse, sub, format, split, utf8.len and utf8.offset
--                     do work the heap bounds, at about a nanosecond a byte: they check the budget
--                     first when their input is long, so that a loop of them is stopped in time.
-- The long cases are in long_calls.lua, compiled into a VM on the first one. string.format is
-- the Luau library's (lua_runtime/luau/format.lua, which does long formats in segments too); the
-- pattern functions are patterns.lua's.
--
-- The chunk returns a factory, called once per guild VM by the kernel on a script's first call of
-- one of these functions: wrappers = factory(kernel). The factory runs as any host module's does,
-- while the libraries hold their own functions (the C functions, and the Luau library's format,
-- split and concat), and takes them from there. kernel = { charge, finish, contents, metatable,
-- find, match, date, time, long_calls }: charge() checks the budget; finish(label, pcall(...))
-- returns the call's results or raises its error again at the script's line, under `label`;
-- contents(t) is a frozen table's store (or t); metatable(v) is v's raw metatable
-- (debug.getmetatable); find, match, date and time are the C functions string.find, string.match,
-- os.date and os.time; long_calls() loads long_calls.lua's factory. The wrappers come back keyed
-- by the function each stands for (wrappers[string.rep], as the libraries have it now). The
-- script calls each itself (the kernel's stand-ins tail-call them): an error raised at level 2
-- names the script's line.

local type, select, error, pcall, next, rawget, rawlen, tostring =
  type, select, error, pcall, next, rawget, rawlen, tostring
local log = math.log
-- v as the integer C takes it (a whole float, or a numeral string), or nil when C would refuse it.
local integer = math.tointeger

-- Above this many bytes or elements a call costs enough to check the budget before it.
local COSTLY <const> = 65536
-- The most values one call returns (Luau's LUAI_MAXCSTACK); and from how many a call checks the
-- budget first (a thousand values cost a few microseconds to push, and as much to pass on).
local MAX_RESULTS <const> = 8000
local MANY_RESULTS <const> = 1024
-- Elements per C call of table.move and friends: a plain table's cost about 15 ns each, a table
-- with a metatable up to 15 µs each (a C __index chain of 2,000 tables).
local PLAIN_SLICE <const> = 16384
local META_SLICE <const> = 64
-- string.rep builds results longer than COSTLY from blocks of at least this many bytes.
local BLOCK <const> = 4096
-- Steps C may take for one sort (1.5 ms): a step is a comparison of two numbers or short strings
-- (about 12 ns), and each byte two strings share before they differ adds one (a NUL byte costs
-- 8 ns). About 9,000 numbers fit.
local SORT_BUDGET <const> = 131072
-- With the script's comparator, C's sort is the comparator's calls, which the hook counts, and
-- the string comparisons inside them, which it does not: strings up to this long are cheap enough.
local SHORT_STRING <const> = 64
local MAX_PACK_FORMAT <const> = 8000
local DATE_SEGMENT <const> = 4096

return function(kernel)
  local charge, finish, contents = kernel.charge, kernel.finish, kernel.contents
  local raw_metatable = kernel.metatable
  local string, table, utf8 = string, table, utf8
  local wrappers = {}

  -- long_calls.lua's functions, compiled on first use.
  local long = nil
  local function long_calls()
    long = long or kernel.long_calls()({
      charge = charge, finish = finish, metatable = raw_metatable, find = kernel.find, match = kernel.match,
      date = kernel.date, time = kernel.time, PLAIN_SLICE = PLAIN_SLICE,
      META_SLICE = META_SLICE, BLOCK = BLOCK, SORT_BUDGET = SORT_BUDGET, SHORT_STRING = SHORT_STRING,
      DATE_SEGMENT = DATE_SEGMENT,
    })
    return long
  end

  -- Elements of `t` (and of `u`) one C call may go through.
  local function slice_of(t, u)
    if raw_metatable(t) == nil and (u == nil or raw_metatable(u) == nil) then return PLAIN_SLICE end
    return META_SLICE
  end

  local function charged_by_length(f, name)
    wrappers[f] = function(s, ...)
      if type(s) == "string" and #s > COSTLY then charge() end
      return finish(name, pcall(f, s, ...))
    end
  end
  for _, name in next, { "upper", "lower", "reverse", "sub", "format", "split" } do
    charged_by_length(string[name], name)
  end
  charged_by_length(utf8.len, "len")
  charged_by_length(utf8.offset, "offset")

  -- Strings ---------------------------------------------------------------------------------------

  local c_rep = string.rep
  wrappers[c_rep] = function(s, n, sep)
    -- C turns number arguments into strings the way tostring does.
    if type(s) == "number" then s = tostring(s) end
    if type(sep) == "number" then sep = tostring(sep) end
    local count = integer(n)
    if type(s) ~= "string" or (sep ~= nil and type(sep) ~= "string") or count == nil then
      return finish("rep", pcall(c_rep, s, n, sep)) -- C refuses these at once
    end
    if count <= 0 then return "" end
    local unit = #s + (sep and #sep or 0)
    local total = count * (unit + 0.0)
    -- Beyond C's own limit, C raises "resulting string too large" before any work.
    if total > 2147483647 then return finish("rep", pcall(c_rep, s, count, sep)) end
    if unit == 0 then return "" end
    if total <= COSTLY then return c_rep(s, count, sep) end
    charge()
    if unit >= BLOCK then return finish("rep", pcall(c_rep, s, count, sep)) end
    return long_calls().rep(s, count, sep)
  end

  -- The values string.byte(s, i, j) returns, clamping i and j as C does (0 when C refuses them).
  local function slice_length(len, i, j)
    i, j = integer(i == nil and 1 or i), integer(j)
    if i == nil or j == nil then return 0 end
    if i < 0 then i = i < -len and 1 or len + i + 1 elseif i == 0 then i = 1 end
    if j > len then j = len elseif j < 0 then j = j < -len and 0 or len + j + 1 end
    return j - i + 1
  end

  local c_byte = string.byte
  wrappers[c_byte] = function(s, i, j)
    if type(s) == "string" and #s > MANY_RESULTS and j ~= nil then
      local n = slice_length(#s, i, j)
      if n > MAX_RESULTS then
        error("string slice too long (string.byte returns at most " .. MAX_RESULTS .. " values)", 2)
      end
      if n > MANY_RESULTS then charge() end
    end
    return finish("byte", pcall(c_byte, s, i, j))
  end

  local c_codepoint = utf8.codepoint
  wrappers[c_codepoint] = function(s, i, j, ...)
    if type(s) == "string" and #s > MANY_RESULTS then
      -- C makes room for a value per byte of the slice (negative positions count from the end).
      local len = #s
      local first = integer(i == nil and 1 or i)
      local last = integer(j == nil and first or j)
      if first and last then
        if first < 0 then first = first < -len and 0 or len + first + 1 end
        if last < 0 then last = last < -len and 0 or len + last + 1 end
        if first >= 1 and last <= len and last - first >= MAX_RESULTS then
          error("string slice too long (utf8.codepoint takes at most " .. MAX_RESULTS .. " bytes)", 2)
        end
        if last - first >= MANY_RESULTS then charge() end
      end
    end
    return finish("codepoint", pcall(c_codepoint, s, i, j, ...))
  end

  -- utf8.codes' iterator skips the continuation bytes after the position it is given, however many
  -- (a script may call it itself, anywhere in a long run of them): on a long string, an iteration
  -- that skipped many, or found the end, checks the budget.
  local c_codes = utf8.codes
  wrappers[c_codes] = function(s, ...)
    if type(s) ~= "string" or #s <= COSTLY then return finish("codes", pcall(c_codes, s, ...)) end
    local iterator, state, control = finish("codes", pcall(c_codes, s, ...))
    return function(subject, i)
      local p, code = iterator(subject, i)
      if p == nil or type(i) ~= "number" or p - i > 64 then charge() end
      return p, code
    end, state, control
  end

  local function pack_family(name)
    local f = string[name]
    wrappers[f] = function(fmt, ...)
      if type(fmt) == "string" then
        if #fmt > MAX_PACK_FORMAT then
          local reason = "format longer than " .. MAX_PACK_FORMAT .. " bytes"
          error("invalid argument #1 to '" .. name .. "' (" .. reason .. ")", 2)
        end
        -- A size of 100,000 or more ("c1000000") makes C pad or copy that many bytes.
        if kernel.find(fmt, "%d%d%d%d%d%d") then charge() end
      end
      local data = ...
      if type(data) == "string" and #data > COSTLY then charge() end
      return finish(name, pcall(f, fmt, ...))
    end
  end
  pack_family("pack")
  pack_family("packsize")
  pack_family("unpack")

  -- Tables ----------------------------------------------------------------------------------------

  local c_move, c_insert, c_remove, c_sort, c_concat, c_unpack =
    table.move, table.insert, table.remove, table.sort, table.concat, table.unpack

  -- The length insert, remove and sort take: the raw length. A __len metamethod could answer any
  -- length, and C loops over all of it: such tables are refused (their metatable is read raw,
  -- past __metatable), except frozen tables, whose __len is the library's own.
  local function plain_length(t, fname)
    if type(t) ~= "table" then return 0 end -- C raises "table expected"
    local mt, store = raw_metatable(t), contents(t)
    if mt ~= nil and rawget(mt, "__len") ~= nil and store == t then
      error("table." .. fname .. " does not accept a table with a __len metamethod", 3)
    end
    local n = rawlen(store)
    if n > COSTLY then charge() end
    return n
  end

  wrappers[c_move] = function(a1, f, e, t, a2)
    local fi, ei, ti = integer(f), integer(e), integer(t)
    if fi and ei and ti and ei >= fi and (ei + 0.0) - fi >= slice_of(a1, a2) then
      return long_calls().move(a1, fi, ei, ti, a2, slice_of(a1, a2))
    end
    return finish("move", pcall(c_move, a1, f, e, t, a2))
  end

  wrappers[c_insert] = function(t, ...)
    local n = plain_length(t, "insert")
    if select("#", ...) == 2 then
      -- C moves t[pos..n] up by one, element by element: a long shift goes in slices.
      local pos = integer((...))
      if pos and pos >= 1 and pos <= n and n - pos >= slice_of(t) then
        return long_calls().insert(t, n, pos, select(2, ...), slice_of(t))
      end
    end
    return finish("insert", pcall(c_insert, t, ...))
  end

  wrappers[c_remove] = function(t, ...)
    local n = plain_length(t, "remove")
    local pos = n
    if (...) ~= nil then pos = integer((...)) end
    -- C moves t[pos+1..n] down by one, element by element: a long shift goes in slices.
    if pos and pos >= 1 and n - pos >= slice_of(t) then return long_calls().remove(t, n, pos, slice_of(t)) end
    return finish("remove", pcall(c_remove, t, ...))
  end

  -- concat and unpack take the raw length when none is given, as Luau's do: C's would call __len.
  wrappers[c_concat] = function(t, sep, i, j)
    if type(t) == "table" and j == nil then j = rawlen(contents(t)) end
    local first, last = integer(i == nil and 1 or i), integer(j)
    if first and last and last >= first and (last + 0.0) - first >= slice_of(t) then
      return long_calls().concat(t, sep, first, last, slice_of(t))
    end
    return c_concat(t, sep, i, j) -- the Luau library's, which raises at the script's line itself
  end

  wrappers[c_unpack] = function(t, i, j)
    if j == nil then
      if type(t) == "table" then j = rawlen(contents(t)) elseif type(t) == "string" then j = #t end
    end
    local first, last = integer(i == nil and 1 or i), integer(j)
    if first and last and last >= first then
      if (last + 0.0) - first >= MAX_RESULTS then
        error("too many results to unpack (at most " .. MAX_RESULTS .. " values)", 2)
      end
      if last - first >= MANY_RESULTS then charge() end
      if last - first >= META_SLICE and slice_of(t) == META_SLICE then
        return long_calls().unpack(t, first, last)
      end
    end
    return finish("unpack", pcall(c_unpack, t, i, j))
  end

  wrappers[c_sort] = function(t, comp)
    local n = plain_length(t, "sort")
    if n > 1 and n < 2147483647 and (comp == nil or type(comp) == "function") then
      -- What one comparison may cost C: the longest string in the array.
      local longest, plain = 0, raw_metatable(t) == nil
      if plain then
        for i = 1, n do
          local v = t[i]
          if type(v) == "string" and #v > longest then longest = #v end
        end
      end
      if not plain or (comp == nil and n * log(n, 2) * (1 + longest) > SORT_BUDGET)
        or (comp ~= nil and longest > SHORT_STRING) then
        return long_calls().sort(t, n, comp, longest)
      end
    end
    return finish("sort", pcall(c_sort, t, comp))
  end

  -- os.date --------------------------------------------------------------------------------------

  local c_date = kernel.date
  wrappers[c_date] = function(fmt, ...)
    if type(fmt) == "string" and #fmt > DATE_SEGMENT and not kernel.find(fmt, "^!?%*t") then
      return long_calls().date(fmt, ...)
    end
    return finish("date", pcall(c_date, fmt, ...))
  end

  return wrappers
end
