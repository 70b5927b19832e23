-- Luau's table additions: freeze, isfrozen, clone, clear, create and find.
--
-- A group of the Luau standard library (see stdlib.lua): compiled into a guild VM the first time a
-- script reads one of these fields of `table`. Called with the helpers stdlib.lua passes every
-- group (frozen tables live in stdlib.lua: the sandbox's read-only views are frozen tables too),
-- returns the functions by name.
local _, argerror, checknumber, checktable, _, _, frozen, store_of, refuse_write, frozen_len, frozen_pairs = ...
local type, error, next, getmetatable, setmetatable, rawget, rawset, rawequal =
  type, error, next, getmetatable, setmetatable, rawget, rawset, rawequal

local luau_table = {}

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

function luau_table.freeze(t)
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

function luau_table.isfrozen(t)
  checktable(t, 1, "isfrozen")
  return frozen[t] ~= nil
end

function luau_table.clone(t)
  checktable(t, 1, "clone")
  local store, mt = store_of(t), getmetatable(t)
  if not store then protected(mt, "clone") end
  no_finalizer(mt, "clone")
  local copy = {}
  for k, v in next, store or t do copy[k] = v end
  return setmetatable(copy, mt or nil)
end

function luau_table.clear(t)
  checktable(t, 1, "clear")
  if frozen[t] then error("attempt to modify a readonly table", 2) end
  for k in next, t do rawset(t, k, nil) end
end

function luau_table.create(n, v)
  n = checknumber(n, 1, "create")
  if n < 0 then argerror(1, "create", "size out of range") end
  local t = {}
  if v ~= nil then for i = 1, n do t[i] = v end end
  return t
end

-- Like Luau's: scans t[init], t[init + 1], ... up to the first nil, comparing raw.
function luau_table.find(t, v, init)
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

return luau_table
