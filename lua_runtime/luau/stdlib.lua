-- Luau's standard library on Lua 5.4.
--
-- Runs once per guild VM, in the host context, before the sandbox builds the guest environment.
-- It extends the real `string`, `table`, `math` and `utf8` tables in place (so that method calls
-- such as ("a,b"):split(",") work through the string metatable) and returns
--   { globals = { typeof, unpack, bit32, tostring, __luau_* helpers }, tostring = <Luau tostring> }
-- where the __luau_* helpers are the functions that translated code calls.
--
-- Rules every function here keeps:
-- * Host functions are reached only through this chunk's locals; nothing needs `debug` or `load`
--   once guest code runs (bit32 is compiled from this chunk's own text, see below).
-- * An error is raised at the guest's level, so that its message names the author's line and not
--   this chunk. Wrapped C functions run under pcall for the same reason (see call_c).
-- * Memory counts more than speed: every guild VM runs this chunk. Functions that share a body are
--   closures of one prototype, and nothing builds tables of constants.

local type, tostring, tonumber, select, error, next = type, tostring, tonumber, select, error, next
local getmetatable, setmetatable, rawget, rawset, rawequal = getmetatable, setmetatable, rawget, rawset, rawequal
local pcall, load = pcall, load
local format, find, sub, gsub, match, rep = string.format, string.find, string.sub, string.gsub, string.match, string.rep
local concat, unpack = table.concat, table.unpack
local floor, modf, fmod, tointeger, huge = math.floor, math.modf, math.fmod, math.tointeger, math.huge
local math_type = math.type

-- Numbers ------------------------------------------------------------------------------------------

-- Luau prints a number in the shortest form that reads back as the same double: in fixed notation
-- when the decimal point falls between 5 places left and 21 places right of the first digit, in
-- scientific notation with a two-digit exponent at least otherwise (5, 0.1, 1e+21, 1e-07, -0, nan).
local function num2str(x)
  -- Luau has doubles only: a Lua integer (from #, string.len, a snowflake given to tonumber...)
  -- prints as the double it would be.
  if math_type(x) == "integer" then x = x + 0.0 end
  if x == x // 1 and x > -2 ^ 53 and x < 2 ^ 53 then
    -- Every integer below 2^53 in magnitude is its own shortest form.
    if x == 0 and 1 / x < 0 then return "-0" end
    return format("%d", x)
  end
  if x ~= x then return "nan" end
  if x == huge or x == -huge then return x > 0 and "inf" or "-inf" end
  -- Fast path: %g with 15 or 16 digits, when it reads back and is in fixed notation, is already
  -- the shortest form laid out as Luau lays it out (the loop below explains why 15 digits suffice).
  local s = format("%.15g", x)
  if s + 0 ~= x then s = format("%.16g", x) end
  if s + 0 == x and not find(s, "e", 1, true) then return s end
  -- The first precision that reads back exactly gives the shortest digits. A normal double's
  -- shortest form has at most 17 digits and, if it has 15 or fewer, rounding to 15 finds it; a
  -- subnormal one has fewer bits of precision, so any count of digits may be shortest. A power of
  -- two reads back from a narrower interval on its side toward zero, so the digits nearest to it
  -- may miss while the next decimal away from zero (one unit more in the last digit) reads back.
  local p = (x > -2.2250738585072014e-308 and x < 2.2250738585072014e-308) and 0 or 14
  s = format("%." .. p .. "e", x)
  while s + 0 ~= x do
    local sign, lead, rest, exp = match(s, "^(-?)(%d)%.?(%d*)e(.*)$")
    local up = format("%d", (lead .. rest) + 1) -- the digits, read as an integer
    if #up > #rest + 1 then up, exp = sub(up, 1, -2), exp + 1 end
    s = format("%s%s.%se%d", sign, sub(up, 1, 1), sub(up, 2), exp)
    if s + 0 ~= x then
      p = p + 1
      s = format("%." .. p .. "e", x)
    end
  end
  local sign, lead, rest, exp = match(s, "^(-?)(%d)%.?(%d-)0*e(.*)$")
  local digits, dot = lead .. rest, exp + 1
  if dot < -5 or dot > 21 then
    return format("%s%s%s%se%s%02d", sign, lead, rest ~= "" and "." or "", rest, dot > 0 and "+" or "-",
      dot > 0 and dot - 1 or 1 - dot)
  elseif dot <= 0 then
    return sign .. "0." .. rep("0", -dot) .. digits
  elseif dot >= #digits then
    return sign .. digits .. rep("0", dot - #digits)
  end
  return sign .. sub(digits, 1, dot) .. "." .. sub(digits, dot + 1)
end

-- Luau's tostring: numbers the Luau way, everything else as Lua does (__tostring included).
local function luau_tostring(...)
  local v = ...
  if type(v) == "number" then return num2str(v) end
  if select("#", ...) == 0 then error("missing argument #1", 2) end
  return tostring(v)
end

-- A value in an interpolated string (always exactly one value: `{f()}` of no values is nil).
local function interpolated(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return num2str(v) end
  return tostring(v)
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

-- string --------------------------------------------------------------------------------------------

-- string.format with Luau's conversions: %s, %q and %* print numbers the Luau way, %* prints any
-- value through tostring, %u is %d, and the integer conversions truncate a fractional number.
string.format = function(fmt, ...)
  if type(fmt) ~= "string" then return (call_c("format", format, fmt, ...)) end
  local args, i = { ... }, 0
  fmt = gsub(fmt, "%%([-+ #0]*%d*%.?%d*)(.?)", function(flags, conv)
    if conv == "%" then return nil end
    i = i + 1
    local v = args[i]
    if conv == "*" then
      args[i] = luau_tostring(v)
      return "%" .. flags .. "s"
    elseif type(v) ~= "number" then
      return nil
    elseif conv == "s" or conv == "q" then
      args[i] = num2str(v)
    elseif find("diouxXc", conv, 1, true) and v % 1 ~= 0 then
      args[i] = tointeger(v - fmod(v, 1)) or v
    end
    if conv == "u" then return "%" .. flags .. "d" end
  end)
  return (call_c("format", format, fmt, unpack(args, 1, select("#", ...))))
end

-- Where the next `sep` starts in `s`, from `init`. C's plain find compares the whole separator at
-- every position where its first byte matches: O(#s * #sep) in one C call, which the sandbox's
-- hook cannot stop. So a separator longer than BLOCK is found by its first BLOCK bytes, then checked
-- one BLOCK at a time (`blocks`: anchored patterns of the rest): each C call does bounded work, and
-- the hook runs between them.
local BLOCK = 64
local function find_separator(s, sep, blocks, init)
  local head = blocks and sub(sep, 1, BLOCK) or sep
  local a = find(s, head, init, true)
  while a and blocks do
    local k = 2
    while blocks[k] and find(s, blocks[k], a + (k - 1) * BLOCK) do k = k + 1 end
    if not blocks[k] then return a end
    a = find(s, head, a + 1, true)
  end
  return a
end

string.split = function(s, sep)
  if type(s) == "number" then s = num2str(s) end
  if type(s) ~= "string" then argerror(1, "split", "string expected, got " .. type(s)) end
  sep = sep or ","
  local parts, n, i = {}, 0, 1
  if sep == "" then
    for k = 1, #s do parts[k] = sub(s, k, k) end
    return parts
  end
  local blocks
  if #sep > BLOCK then
    blocks = {}
    for k = 1, #sep, BLOCK do blocks[#blocks + 1] = "^" .. gsub(sub(sep, k, k + BLOCK - 1), "%W", "%%%0") end
  end
  while true do
    local a = find_separator(s, sep, blocks, i)
    n = n + 1
    parts[n] = sub(s, i, (a or 0) - 1)
    if not a then return parts end
    i = a + #sep
  end
end

-- table ---------------------------------------------------------------------------------------------

-- A frozen table is emptied into a hidden store, and its new metatable reads through to the store
-- while every write reaches __newindex and fails. `frozen` maps each frozen table to its store; its
-- keys are weak, so freezing never keeps a table alive.
local frozen = setmetatable({}, { __mode = "k" })

local function refuse_write()
  error("attempt to modify a readonly table", 2)
end

local function frozen_next(t, k)
  return next(frozen[t], k)
end

local function frozen_len(t)
  return #frozen[t]
end

local function frozen_pairs(t)
  return frozen_next, t, nil
end

-- A metatable a guest may not replace (Luau refuses to freeze or clone such a table).
local function protected(mt, fname)
  if mt ~= nil and (type(mt) ~= "table" or rawget(mt, "__metatable") ~= nil) then
    argerror(1, fname, "table has a protected metatable", 4)
  end
end

-- freeze and clone set a guest's metatable with the real setmetatable. Lua marks a table for
-- finalization when it gets a metatable that has __gc at that moment, and finalizers run with the
-- sandbox's hooks off: a __gc added to the metatable after the sandbox's setmetatable checked it
-- must not get through here.
local function no_finalizer(mt, fname)
  if type(mt) == "table" and (rawget(mt, "__gc") ~= nil or rawget(mt, "__close") ~= nil) then
    argerror(1, fname, "table's metatable has a __gc or __close metamethod", 4)
  end
end

table.freeze = function(t)
  checktable(t, 1, "freeze")
  if frozen[t] then argerror(1, "freeze", "table is already frozen") end
  local mt = getmetatable(t)
  protected(mt, "freeze")
  no_finalizer(mt, "freeze")
  local store, proxy_mt = {}, {}
  for k, v in next, t do store[k] = v end
  for k in next, store do rawset(t, k, nil) end
  if mt then
    -- Operators (__add, __eq, __tostring, ...) keep working; __index chains through the store.
    setmetatable(store, mt)
    for k, v in next, mt do proxy_mt[k] = v end
  end
  proxy_mt.__index, proxy_mt.__newindex = store, refuse_write
  proxy_mt.__len, proxy_mt.__pairs = frozen_len, frozen_pairs
  -- getmetatable answers the table's own metatable (false if it had none); setmetatable is refused.
  proxy_mt.__metatable = mt or false
  frozen[t] = store
  return setmetatable(t, proxy_mt)
end

-- For the sandbox: a read-only view of `store` (a library table, a module), which guests see as a
-- frozen table while the host keeps `store` itself; and the fields of a table a script froze.
local function readonly(store)
  local view = setmetatable({}, { __index = store, __newindex = refuse_write, __len = frozen_len,
                                  __pairs = frozen_pairs, __metatable = false })
  frozen[view] = store
  return view
end

local function contents(t)
  return frozen[t] or t
end

-- rawset is a write too: the guest gets this one instead of Lua's.
local function luau_rawset(t, k, v)
  checktable(t, 1, "rawset")
  if frozen[t] then error("attempt to modify a readonly table", 2) end
  return (call_c("rawset", rawset, t, k, v))
end

table.isfrozen = function(t)
  checktable(t, 1, "isfrozen")
  return frozen[t] ~= nil
end

table.clone = function(t)
  checktable(t, 1, "clone")
  local store, mt = frozen[t], getmetatable(t)
  if not store then protected(mt, "clone") end
  no_finalizer(mt, "clone")
  local copy = {}
  for k, v in next, store or t do copy[k] = v end
  return setmetatable(copy, mt or nil)
end

table.clear = function(t)
  checktable(t, 1, "clear")
  if frozen[t] then error("attempt to modify a readonly table", 2) end
  for k in next, t do rawset(t, k, nil) end
end

table.create = function(n, v)
  n = checknumber(n, 1, "create")
  if n < 0 then argerror(1, "create", "size out of range") end
  local t = {}
  if v ~= nil then for i = 1, n do t[i] = v end end
  return t
end

-- Like Luau's: scans t[init], t[init + 1], ... up to the first nil, comparing raw.
table.find = function(t, v, init)
  checktable(t, 1, "find")
  local i = init and checknumber(init, 3, "find") or 1
  if i < 1 then argerror(3, "find", "index out of range") end
  local x = rawget(t, i)
  while x ~= nil do
    if rawequal(x, v) then return i end
    i = i + 1
    x = rawget(t, i)
  end
  return nil
end

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

-- math ------------------------------------------------------------------------------------------------

math.clamp = function(x, lo, hi)
  x, lo, hi = checknumber(x, 1, "clamp"), checknumber(lo, 2, "clamp"), checknumber(hi, 3, "clamp")
  if lo > hi then argerror(3, "clamp", "max must be greater than or equal to min") end
  return x < lo and lo or x > hi and hi or x
end

math.sign = function(x)
  x = checknumber(x, 1, "sign")
  return x > 0 and 1.0 or x < 0 and -1.0 or 0.0
end

-- Half away from zero, and exact: floor(x + 0.5) would round 0.49999999999999994 up to 1.
math.round = function(x)
  local int, frac = modf(checknumber(x, 1, "round"))
  if frac >= 0.5 then return int + 1.0 end
  if frac <= -0.5 then return int - 1.0 end
  return int
end

-- utf8 ------------------------------------------------------------------------------------------------

-- Luau's pattern stops at U+10FFFF's lead byte (Lua 5.4's accepts the old 5- and 6-byte forms).
utf8.charpattern = "[\0-\x7F\xC2-\xF4][\x80-\xBF]*"

-- bit32 -----------------------------------------------------------------------------------------------

-- Luau's bit32 works on numbers truncated toward zero and taken modulo 2^32, and answers numbers in
-- [0, 2^32); Lua 5.4's integer operators do the work. Few scripts use it, so its code stays text
-- (about a third of what compiled functions would take) until a script first reads a field of
-- `bit32`: then it is compiled once and the table filled in. In that text, band/bor/bxor/btest,
-- the shifts and rotations, and countlz/countrz each share one body; a negative shift goes the
-- other way, as in Luau.
local BIT32 = [[
local checknumber, argerror = ...
local select, fmod, tointeger, huge = select, math.fmod, math.tointeger, math.huge
local M = 0xFFFFFFFF
local function u(x, n, f)
  x = checknumber(x, n, f, 4)
  if x ~= x or x == huge or x == -huge then return 0 end
  return tointeger((x - fmod(x, 1)) % 4294967296.0)
end
local b = {}
local function fold(op, f)
  return function(...)
    local r = op == "and" and M or 0
    for i = 1, select("#", ...) do
      local v = u((select(i, ...)), i, f)
      if op == "and" then r = r & v elseif op == "or" then r = r | v else r = r ~ v end
    end
    if f == "btest" then return r ~= 0 end
    return r + 0.0
  end
end
b.band, b.bor, b.bxor, b.btest = fold("and", "band"), fold("or", "bor"), fold("xor", "bxor"), fold("and", "btest")
b.bnot = function(x) return (~u(x, 1, "bnot") & M) + 0.0 end
local function shift(f)
  return function(x, d)
    x, d = u(x, 1, f), checknumber(d, 2, f)
    d = d - fmod(d, 1)
    if f == "lrotate" or f == "rrotate" then
      d = tointeger((f == "lrotate" and d or -d) % 32)
      return ((x << d | x >> (32 - d)) & M) + 0.0
    end
    local left = f == "lshift"
    if d < 0 then d, left = -d, not left end
    if d >= 32 then return f == "arshift" and not left and x > 0x7FFFFFFF and 4294967295.0 or 0.0 end
    d = tointeger(d)
    if left then return ((x << d) & M) + 0.0 end
    -- As a 64-bit integer, x - 2^32 has an upper half of ones, which shift in from the left.
    if f == "arshift" and x > 0x7FFFFFFF then x = x - 0x100000000 end
    return ((x >> d) & M) + 0.0
  end
end
for _, f in next, { "lshift", "rshift", "arshift", "lrotate", "rrotate" } do b[f] = shift(f) end
local function field(f, fp, w)
  fp, w = checknumber(fp, 2, f, 4), checknumber(w or 1, 3, f, 4)
  fp, w = tointeger(fp - fmod(fp, 1)), tointeger(w - fmod(w, 1))
  if not fp or not w or fp < 0 or w <= 0 or fp + w > 32 then error("trying to access non-existent bits", 3) end
  return fp, ((1 << w) - 1) << fp
end
b.extract = function(x, fp, w)
  local at, mask = field("extract", fp, w)
  return ((u(x, 1, "extract") & mask) >> at) + 0.0
end
b.replace = function(x, v, fp, w)
  local at, mask = field("replace", fp, w)
  return ((u(x, 1, "replace") & ~mask) | ((u(v, 2, "replace") << at) & mask)) + 0.0
end
local function count(f)
  return function(x)
    x = u(x, 1, f)
    for i = 0, 31 do
      if x >> (f == "countlz" and 31 - i or i) & 1 == 1 then return i + 0.0 end
    end
    return 32.0
  end
end
b.countlz, b.countrz = count("countlz"), count("countrz")
b.byteswap = function(x)
  x = u(x, 1, "byteswap")
  return ((x & 0xFF) << 24 | (x & 0xFF00) << 8 | (x >> 8) & 0xFF00 | x >> 24) + 0.0
end
return b
]]

local bit32 = setmetatable({}, {
  __index = function(t, name)
    setmetatable(t, nil)
    for k, f in next, load(BIT32, "=luau_bit32", "t")(checknumber, argerror) do t[k] = f end
    return t[name]
  end,
})

-- Generalized iteration -----------------------------------------------------------------------------

-- `for k, v in x do`: a function runs as the iterator; a table with __iter yields the iterator its
-- __iter returns; a callable table is called like a function; any other table is walked with next.
-- Exactly three values come back: a fourth would be a Lua 5.4 to-be-closed value, and Luau has none.
local function iterate(f, s, c)
  if type(f) == "function" then return f, s, c end
  if type(f) ~= "table" then error("attempt to iterate over a " .. type(f) .. " value", 2) end
  local store = frozen[f]
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
  tostring = luau_tostring,
  readonly = readonly,
  contents = contents,
  globals = {
    typeof = type,
    unpack = unpack,
    bit32 = bit32,
    rawset = luau_rawset,
    tostring = luau_tostring,
    __luau_iter = iterate,
    __luau_str = interpolated,
    __luau_cat = concat_operand,
    __luau_mod = modulo,
  },
}
