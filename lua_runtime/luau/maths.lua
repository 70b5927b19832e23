-- Luau's math additions: clamp, sign and round.
--
-- A group of the Luau standard library (see stdlib.lua): compiled into a guild VM the first time a
-- script reads one of these fields of `math`. Called with the helpers stdlib.lua passes every
-- group, returns the functions by name.
local _, argerror, checknumber = ...
local modf = math.modf

local luau_math = {}

function luau_math.clamp(x, lo, hi)
  x, lo, hi = checknumber(x, 1, "clamp"), checknumber(lo, 2, "clamp"), checknumber(hi, 3, "clamp")
  if lo > hi then argerror(3, "clamp", "max must be greater than or equal to min") end
  return x < lo and lo or x > hi and hi or x
end

function luau_math.sign(x)
  x = checknumber(x, 1, "sign")
  return x > 0 and 1.0 or x < 0 and -1.0 or 0.0
end

-- Half away from zero, and exact: floor(x + 0.5) would round 0.49999999999999994 up to 1.
function luau_math.round(x)
  local int, frac = modf(checknumber(x, 1, "round"))
  if frac >= 0.5 then return int + 1.0 end
  if frac <= -0.5 then return int - 1.0 end
  return int
end

return luau_math
