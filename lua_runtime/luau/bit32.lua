-- Luau's bit32 library.
--
-- A group of the Luau standard library (see stdlib.lua): compiled into a guild VM the first time a
-- script reads a field of `bit32`. Called with the helpers stdlib.lua passes every group, returns
-- the library's functions by name.
--
-- Luau's bit32 works on numbers truncated toward zero and taken modulo 2^32, and answers numbers in
-- [0, 2^32); Lua 5.4's integer operators do the work. band/bor/bxor/btest, the shifts and
-- rotations, and countlz/countrz each share one body; a negative shift goes the other way, as in
-- Luau.
local _, _, checknumber = ...
local select, error, next, fmod, tointeger, huge = select, error, next, math.fmod, math.tointeger, math.huge
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
