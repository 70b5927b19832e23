-- Luau's standard library on Lua 5.4: the part every guild VM carries, and the loader of the rest.
--
-- Runs once per guild VM, in the host context, before the sandbox builds the guest environment.
-- It extends the real `string`, `table`, `math` and `utf8` tables in place (so that method calls
-- such as ("a,b"):split(",") work through the string metatable) and returns
--   { globals = { typeof, unpack, bit32, rawset, tostring, __luau_* helpers }, tostring = <Luau tostring>,
--     readonly = f, contents = f, format = <Lua's string.format> }
-- where the __luau_* helpers are the functions that translated code calls.
--
-- Most of the library is compiled into a VM only when a script first needs it: every guild VM would
-- otherwise carry all of it, and most scripts use little of it. It comes in groups, one chunk each
-- in this folder: numbers.lua (Luau's number formatting), format.lua (string.format), names.lua
-- (what tostring shows of tables and functions), strings.lua (string.split), tables.lua (freeze,
-- isfrozen, clone, clear, create, find), maths.lua (clamp, sign, round) and bit32.lua. A group is
-- loaded
-- * for `table`, `math` and `bit32`: when a script reads a field the library table lacks. The table
--   has a metatable (LAZY) whose __index fills it from the group, then removes itself; iterating a
--   library (pairs, generalized iteration, table.clone) fills it first, so nothing looks missing;
-- * for string.split: on the first call. The sandbox's kernel wraps it when it starts, so the
--   library holds a small forwarding function in its place;
-- * for string.format: on the first call, as for string.split;
-- * for tostring, print, interpolation, `..` and table.concat: when a number that is not a whole
--   number below 2^53 is first formatted (numbers.lua), or a table, function or thread (names.lua).
--
-- Called with fetch and fetched (see lua_runtime/sandbox.py): fetch(name) hands over the stripped
-- bytecode of group `name` with the host's heap ceiling in force, fetched() puts the guest's back.
-- Loading under the host's ceiling matters: the bytecode is a new string pushed from Python, and a
-- push into a full heap would abort the process. The group's own code then runs under the guest's
-- ceiling, so a first use with a full heap fails as the guest's memory error, never as an abort.
-- Run on its own, without fetch (the Luau test harness runs this file in a plain lupa runtime), the
-- groups are compiled from their source files, read through lupa's `python` module; the sandbox
-- removes that module before this chunk runs, and always passes fetch.
--
-- Rules every function here keeps:
-- * Host functions are reached only through locals of this chunk and of the groups; nothing needs
--   `debug` or `load` once guest code runs.
-- * An error is raised at the guest's level, so that its message names the author's line and not
--   this chunk. Wrapped C functions run under pcall for the same reason (see call_c). Forwarding
--   functions tail-call, so that they add no level.
-- * Memory counts more than speed: every guild VM runs this chunk. Functions that share a body are
--   closures of one prototype, and the only tables built are the loader's own three.

local fetch, fetched = ...
local type, tostring, tonumber, select, error, next = type, tostring, tonumber, select, error, next
local getmetatable, setmetatable, rawget, rawset, rawequal = getmetatable, setmetatable, rawget, rawset, rawequal
local pcall, load = pcall, load
local format, gsub, concat, unpack = string.format, string.gsub, table.concat, table.unpack
local floor = math.floor

-- Errors ------------------------------------------------------------------------------------------

-- Raise Luau's "invalid argument" message at `level` (default 3: the guest that called the library
-- function that called this).
local function argerror(n, fname, msg, level)
  error(format("invalid argument #%d to '%s' (%s)", n, fname, msg), level or 3)
end

local function checktable(t, n, fname)
  if type(t) ~= "table" then argerror(n, fname, "table expected, got " .. type(t), 4) end
end

local function checknumber(x, n, fname, level)
  local v = type(x) == "number" and x or type(x) == "string" and tonumber(x)
  if not v then argerror(n, fname, "number expected, got " .. type(x), (level or 3) + 1) end
  return v
end

-- Calls a C library function on the guest's behalf. A C function's error would carry this chunk's
-- position, so a failure is raised again at the guest's line, under the guest-facing name (a C
-- function called through pcall has no name of its own: Lua writes '?'). Callers write
-- `return (call_c(...))`: a tail call would drop their frame and shift the level.
local function call_c(fname, f, ...)
  local ok, result = pcall(f, ...)
  if ok then return result end
  -- Out of memory stays exactly "not enough memory", with no position: that is how the sandbox
  -- tells the memory limit from an ordinary error.
  if result == "not enough memory" then error(result, 0) end
  if type(result) == "string" then result = gsub(result, "'%?'", "'" .. fname .. "'", 1) end
  error(result, 3)
end

-- Frozen tables -----------------------------------------------------------------------------------

-- A frozen table is emptied into a hidden store, and its new metatable reads through to the store
-- while every write reaches __newindex and fails. `frozen` maps each frozen table to its store; its
-- keys are weak, so freezing never keeps a table alive. table.freeze itself is in tables.lua.
local frozen = setmetatable({}, { __mode = "k" })

local function refuse_write()
  error("attempt to modify a readonly table", 2)
end

local store_of -- defined below, once the loader exists

local function frozen_next(t, k)
  return next(frozen[t], k)
end

local function frozen_len(t)
  return #frozen[t]
end

local function frozen_pairs(t)
  store_of(t)
  return frozen_next, t, nil
end

-- The groups, loaded on first use ------------------------------------------------------------------

local mode = "b"
if not fetch then
  fetch, fetched, mode = python.builtins.__import__("lua_runtime.luau").luau.group_source, function() end, "t"
end

-- The C functions the groups call, taken now: the sandbox's kernel replaces the library's entries
-- with wrappers that charge the CPU budget, and the groups' own calls are bounded already. `debug`
-- is gone by the time a group loads: names.lua reads metatables as C does, with its getmetatable.
-- The kernel adds C.charge, its check of the CPU budget, before any script runs (and so before any
-- group loads), for the groups that split long work into several C calls.
local C = {
  format = format, find = string.find, sub = string.sub, gsub = gsub, match = string.match, rep = string.rep,
  unpack = unpack, concat = concat, getmetatable = debug and debug.getmetatable or getmetatable,
}

-- Groups already loaded, by chunk name.
local loaded = {}
local num2str -- below: the whole numbers here, the rest in numbers.lua

-- The group in chunk `name` ("luau_numbers"...): its functions by name. Every group is called with
-- the same helpers, in this order, and takes the ones it needs: the C functions, the argument
-- checks, call_c, num2str, the frozen-table machinery, and group() itself.
local function group(name)
  local additions = loaded[name]
  if additions then return additions end
  local chunk = fetch(name)
  local ok, main = pcall(load, chunk, "=" .. name, mode)
  fetched()
  if not ok or not main then error("cannot load the Luau library group " .. name, 0) end
  additions = main(C, argerror, checknumber, checktable, call_c, num2str, frozen, store_of, refuse_write,
    frozen_len, frozen_pairs, group)
  loaded[name] = additions
  return additions
end

-- What fills each library table that has LAZY as its metatable: the name of a group, or a function
-- that returns the library's functions (the kernel's host modules, see `lazy` below).
local bit32 = {}
local LIBRARY_GROUP = { [table] = "luau_tables", [math] = "luau_maths", [bit32] = "luau_bit32" }

-- Fills library table `library` with its functions, and ends its laziness.
local function fill(library)
  local source = LIBRARY_GROUP[library]
  local additions = type(source) == "function" and source() or group(source)
  for name, f in next, additions do rawset(library, name, f) end
  setmetatable(library, nil)
  LIBRARY_GROUP[library] = nil
end

local LAZY = {
  __index = function(library, name)
    fill(library)
    return rawget(library, name)
  end,
}
setmetatable(table, LAZY)
setmetatable(math, LAZY)
setmetatable(bit32, LAZY)

-- An empty library table that `load()` fills on its first read or iteration, like `table` and
-- `math`: for the kernel's host modules, whose code a script that never calls them need not carry.
local function lazy(load_functions)
  local library = setmetatable({}, LAZY)
  LIBRARY_GROUP[library] = load_functions
  return library
end

-- The store behind frozen table `t` (nil if `t` is not frozen), complete: a library is filled first.
function store_of(t)
  local store = frozen[t]
  if store and rawequal(getmetatable(store), LAZY) then fill(store) end
  return store
end

-- A function that calls function `fname` of group `name`: stands in for a library function that the
-- kernel wraps when it starts (it reads it before any script could need it).
local function forward(name, fname)
  return function(...) return group(name)[fname](...) end
end
string.split = forward("luau_strings", "split")

-- A number as Luau prints it. Whole numbers below 2^53 in magnitude, the ones scripts print most
-- (counts, lengths, times), are their own shortest form; every other goes to numbers.lua.
num2str = function(x)
  if x == x // 1 and x > -2 ^ 53 and x < 2 ^ 53 and (x ~= 0 or 1 / x > 0) then return format("%d", x) end
  return group("luau_numbers").num2str(x)
end

-- Luau's pattern stops at U+10FFFF's lead byte (Lua 5.4's accepts the old 5- and 6-byte forms).
utf8.charpattern = "[\0-\x7F\xC2-\xF4][\x80-\xBF]*"

-- For the sandbox: a read-only view of `store` (a library table, a module), which guests see as a
-- frozen table while the host keeps `store` itself; and the fields of a table a script froze. Each
-- view has a metatable of its own, whose __index is the store itself. A shared metatable with a
-- function __index would save a quarter of a KiB per view, but it makes every library read a
-- metamethod call, and with it the recursion through coroutine.wrap of tests/sandbox/test_cpu.py ran
-- for seconds past its CPU limit (near the C stack's limit, the budget hook cannot run). A view has
-- no __len: its store has names for keys and no 1, so its length is 0 either way, and the four
-- fields fit a hash of four slots where five take eight.
local function readonly(store)
  local view = setmetatable({}, { __index = store, __newindex = refuse_write, __pairs = frozen_pairs,
                                  __metatable = false })
  frozen[view] = store
  return view
end

local function contents(t)
  return store_of(t) or t
end

-- rawset is a write too: the guest gets this one instead of Lua's.
local function luau_rawset(t, k, v)
  checktable(t, 1, "rawset")
  if frozen[t] then error("attempt to modify a readonly table", 2) end
  return (call_c("rawset", rawset, t, k, v))
end

-- Numbers ------------------------------------------------------------------------------------------

-- Luau's tostring: numbers the Luau way (numbers.lua); tables, functions, threads and userdata
-- with a number of this VM's in place of their heap address (names.lua); the rest as Lua does.
-- __tostring is honoured.
local function luau_tostring(...)
  local v = ...
  local t = type(v)
  if t == "number" then return num2str(v) end
  if select("#", ...) == 0 then error("missing argument #1", 2) end
  if t == "table" or t == "function" or t == "thread" or t == "userdata" then
    return group("luau_names").name(v)
  end
  return tostring(v)
end

-- string.format with Luau's conversions is in format.lua: it is compiled into a VM on the first call.
string.format = forward("luau_format", "format")

-- table.concat with Luau's number formatting (Lua 5.4 would write 10/2 as 5.0).
table.concat = function(t, sep, i, j)
  if type(t) == "table" and (i == nil or type(i) == "number") and (j == nil or type(j) == "number") then
    i, j = i or 1, j or #t
    local copy
    for k = i, j do
      local v = t[k]
      if type(v) == "number" then
        copy = copy or { unpack(t, i, j) }
        copy[k - i + 1] = num2str(v)
      end
    end
    if copy then return (call_c("concat", concat, copy, sep)) end
  end
  return (call_c("concat", concat, t, sep, i, j))
end

-- A value in an interpolated string (always exactly one value: `{f()}` of no values is nil).
local function interpolated(v)
  if type(v) == "string" then return v end
  return luau_tostring(v)
end

-- An operand of `..`: a number becomes Luau text; anything else is left to the real `..`, so that
-- __concat metamethods run and a bad operand fails on the author's line with Lua's own message.
local function concat_operand(v)
  if type(v) == "number" then return num2str(v) end
  return v
end

-- a % b as Luau computes it, a - floor(a / b) * b. Lua 5.4's float % goes through fmod instead,
-- which answers -0 for -4 % 2 and 5 for 5 % math.huge, where Luau answers 0 and nan. Tables and
-- userdata go to the real %, for their __mod metamethods.
local function modulo(a, b)
  local ta, tb = type(a), type(b)
  if ta == "number" and tb == "number" then return a - floor(a / b) * b end
  if ta == "table" or tb == "table" or ta == "userdata" or tb == "userdata" then return a % b end
  local x, y = tonumber(a), tonumber(b)
  if x and y then return x - floor(x / y) * y end
  error("attempt to perform arithmetic on a " .. (x and tb or ta) .. " value", 2)
end

-- Generalized iteration -----------------------------------------------------------------------------

-- `for k, v in x do`: a function runs as the iterator; a table with __iter yields the iterator its
-- __iter returns; a callable table is called like a function; any other table is walked with next.
-- Exactly three values come back: a fourth would be a Lua 5.4 to-be-closed value, and Luau has none.
local function iterate(f, s, c)
  if type(f) == "function" then return f, s, c end
  if type(f) ~= "table" then error("attempt to iterate over a " .. type(f) .. " value", 2) end
  local store = store_of(f)
  if store then return next, store, nil end
  local mt = getmetatable(f)
  if type(mt) == "table" then
    local iter = rawget(mt, "__iter")
    if iter then
      local a, b, d = iter(f)
      return a, b, d
    end
    if rawget(mt, "__call") then return f, s, c end
  end
  return next, f, nil
end

return {
  format = format, -- Lua's own: the kernel's messages need none of Luau's conversions
  tostring = luau_tostring,
  readonly = readonly,
  contents = contents,
  lazy = lazy,
  C = C, -- for the kernel's charge (see above)
  globals = {
    typeof = type,
    unpack = table.unpack,
    bit32 = bit32,
    rawset = luau_rawset,
    tostring = luau_tostring,
    __luau_iter = iterate,
    __luau_str = interpolated,
    __luau_cat = concat_operand,
    __luau_mod = modulo,
  },
}
