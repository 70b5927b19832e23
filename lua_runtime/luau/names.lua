-- Names of tables, functions, threads and userdata in text.
--
-- A group of the Luau standard library (see stdlib.lua): compiled into a guild VM the first time a
-- script turns such a value into text (tostring, print, string interpolation, string.format's %s,
-- %* and %p). Called with the helpers stdlib.lua passes every group, returns
-- { name = f, pointer = f }.
--
-- Lua writes these values with their heap address ("table: 0x5581b2c4d6e0"). An address tells a
-- script where the host's allocator put things, which helps whoever attacks the process, and its
-- changes show the allocations of other guilds' scripts in the same process. A guild VM numbers
-- such values instead, in the order they are first shown ("table: 0x00000001"): two values still
-- get different names, a value keeps its name as long as it lives, and the numbers are the VM's
-- own (a rebuilt VM starts again at 1).
local C, _, _, _, _, _, frozen = ...
local type, tostring, rawget, setmetatable = type, tostring, rawget, setmetatable
local format, metatable_of = C.format, C.getmetatable

-- Value -> its number. Weak keys: being shown does not keep a value alive. The metatable is that
-- of stdlib.lua's index of frozen tables ({ __mode = "k" }): this group is loaded once scripts run,
-- when a "__mode" written anew no longer makes a table weak (lua_runtime/weak_mode.py).
local numbers = setmetatable({}, metatable_of(frozen))
local shown = 0

local function number_of(v)
  local n = numbers[v]
  if n == nil then
    shown = shown + 1
    n = shown
    numbers[v] = n
  end
  return n
end

local names = {}

-- What tostring makes of `v` (a table, function, thread or userdata): its __tostring's result when
-- it has one, else "<kind>: 0x<number>", where kind is the metatable's __name if that is a string
-- ("Point: 0x00000003"), as Lua does. The metatable is read raw, as C reads it, past __metatable.
function names.name(v)
  local kind, mt = type(v), metatable_of(v)
  if mt ~= nil then
    if rawget(mt, "__tostring") ~= nil then return tostring(v) end
    local name = rawget(mt, "__name")
    if type(name) == "string" then kind = name end
  end
  return format("%s: 0x%08x", kind, number_of(v))
end

-- What string.format's %p makes of `v`: "0x<number>" for a table, function, thread or userdata,
-- and "(null)" for any other value (which, in Lua, is either not an object or a string, whose
-- address says nothing a script can use).
function names.pointer(v)
  local t = type(v)
  if t == "table" or t == "function" or t == "thread" or t == "userdata" then
    return format("0x%08x", number_of(v))
  end
  return "(null)"
end

return names
