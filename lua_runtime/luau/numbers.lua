-- Luau's number formatting.
--
-- A group of the Luau standard library (see stdlib.lua): compiled into a guild VM the first time a
-- number that is not a whole number below 2^53 is formatted the Luau way (tostring, print,
-- interpolation, `..`, string.format's %s, %q and %*, table.concat). Called with the helpers
-- stdlib.lua passes every group, returns { num2str = f }.
local C = ...
local format, find, sub, match, rep = C.format, C.find, C.sub, C.match, C.rep
local huge = math.huge
local math_type = math.type

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

return { num2str = num2str }
