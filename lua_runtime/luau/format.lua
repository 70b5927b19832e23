-- Luau's string.format.
--
-- A group of the Luau standard library (see stdlib.lua): compiled into a guild VM the first time a
-- script calls string.format. Called with the helpers stdlib.lua passes every group, returns
-- { format = f }.
local C, _, _, _, call_c, num2str, _, _, _, _, _, group = ...
local charge = C.charge or function() end -- the sandbox's check of the CPU budget
local format, find, sub, gsub, unpack, concat = C.format, C.find, C.sub, C.gsub, C.unpack, C.concat
local type, tostring, select, pcall, error, min = type, tostring, select, pcall, error, math.min
local fmod, tointeger = math.fmod, math.tointeger

-- string.format with Luau's conversions: %s, %q and %* print numbers the Luau way, %* prints any
-- value through tostring, %u is %d, and the integer conversions truncate a fractional number.
-- Tables, functions and threads show the VM's numbers for them, never an address (names.lua),
-- with %s and %* as with %p.
--
-- C's format does its work in one call, where the sandbox's hook cannot stop it: about 2 ns a
-- byte of format, 50 to 250 ns a conversion, and 50 ns a byte for %q of control characters (and
-- the pass below that turns Luau's conversions into C's calls back into Lua for each of them, a
-- microsecond each, which the hook counts as a few instructions). So a long format (more than
-- SEGMENT_BYTES, or SEGMENT_ARGS values) is formatted in segments that end between two
-- conversions, with the budget checked before each, and %q quotes a long string QUOTE_SLICE bytes
-- at a time.
local SEGMENT_BYTES, SEGMENT_ARGS, QUOTE_SLICE = 4096, 256, 16384
local CONVERSION = "%%([-+ #0]*%d*%.?%d*)(.?)"

-- C's %q of a long string, a slice at a time. C writes a control character as \ddd when a digit
-- follows it, and as \d otherwise, so slices never end on a control character followed by a digit.
local function quoted(v)
  local pieces, n, from, len = { '"' }, 1, 1, #v
  while from <= len do
    local to = from + QUOTE_SLICE - 1
    if to < len and find(sub(v, to, to + 1), "^[%c][%d]") then to = to + 1 end
    charge()
    n = n + 1
    pieces[n] = sub(format("%q", sub(v, from, to)), 2, -2)
    from = to + 1
  end
  pieces[n + 1] = '"'
  return concat(pieces)
end

local function names()
  return group("luau_names")
end

-- `fmt` with Luau's conversions turned into C's, and args[first], args[first + 1]... (the values
-- its conversions take) turned into what C is to format.
local function convert(fmt, args, first)
  local i = first - 1
  return (gsub(fmt, CONVERSION, function(flags, conv)
    if conv == "%" then return nil end
    i = i + 1
    local v = args[i]
    local tv = type(v)
    local object = tv == "table" or tv == "function" or tv == "thread" or tv == "userdata"
    if conv == "*" then
      args[i] = tv == "number" and num2str(v) or object and names().name(v) or tostring(v)
      return "%" .. flags .. "s"
    elseif conv == "p" then
      args[i] = names().pointer(v)
      return "%" .. flags .. "s"
    elseif object then
      if conv == "s" then args[i] = names().name(v) end
      return nil
    elseif tv == "string" then
      if conv == "q" and flags == "" and #v > QUOTE_SLICE then
        args[i] = quoted(v)
        return "%s"
      end
      return nil
    elseif tv ~= "number" then
      return nil
    elseif conv == "s" or conv == "q" then
      args[i] = num2str(v)
    elseif find("diouxXc", conv, 1, true) and v % 1 ~= 0 then
      args[i] = tointeger(v - fmod(v, 1)) or v
    end
    if conv == "u" then return "%" .. flags .. "d" end
  end))
end

-- A long format, in segments. An error names the argument by its place in the whole call.
local function in_segments(fmt, args, nargs)
  local len, pieces, count = #fmt, {}, 0
  local from, first = 1, 1 -- where the segment starts, and its first value
  local p, e, _, conv = find(fmt, CONVERSION, 1) -- the next conversion, from byte p to byte e
  while from <= len do
    local limit, stop, taken = from + SEGMENT_BYTES - 1, from - 1, 0
    -- Whole conversions while they fit, then the plain text up to the next one (or to the limit).
    while p and e <= limit and taken < SEGMENT_ARGS do
      if conv ~= "%" then taken = taken + 1 end
      stop = e
      p, e, _, conv = find(fmt, CONVERSION, e + 1)
    end
    local text_end = min(p and p - 1 or len, limit)
    if text_end > stop then stop = text_end end
    if stop < from then -- a conversion longer than a segment ("%" and 20,000 flags): C refuses it
      if conv ~= "%" then taken = 1 end
      stop = e
      p, e, _, conv = find(fmt, CONVERSION, e + 1)
    end
    charge()
    local last = min(first + taken - 1, nargs)
    local ok, piece = pcall(format, convert(sub(fmt, from, stop), args, first), unpack(args, first, last))
    if not ok then
      if type(piece) == "string" then
        piece = gsub(piece, "^bad argument #(%d+) to '%?'", function(k)
          return "bad argument #" .. (k + first - 1) .. " to 'format'"
        end, 1)
      end
      error(piece, piece == "not enough memory" and 0 or 3)
    end
    count = count + 1
    pieces[count] = piece
    from, first = stop + 1, first + taken
  end
  return concat(pieces)
end

local function luau_format(fmt, ...)
  if type(fmt) ~= "string" then return (call_c("format", format, fmt, ...)) end
  local nargs = select("#", ...)
  local args = { ... }
  if #fmt > SEGMENT_BYTES or nargs > SEGMENT_ARGS then return (in_segments(fmt, args, nargs)) end
  return (call_c("format", format, convert(fmt, args, 1), unpack(args, 1, nargs)))
end

return { format = luau_format }
