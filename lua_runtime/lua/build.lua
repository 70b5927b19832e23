-- Loading scripts into a guild VM: the part of the kernel that only a VM's build needs.
--
-- A VM's scripts are fixed for its life (a reload builds a new VM), so compiling a script, running
-- its top level and checking what it exports happen only while the VM is built. This chunk holds
-- that code apart from the kernel, so that an idle VM does not carry it: the kernel compiles it on
-- each call of kernel.build(), the host loads every script through what that returns, then drops
-- it, and the collector takes the code with it.
--
-- Returns a factory; kernel.build() calls it with `k`, the kernel's pieces that loading uses:
--   ENV_MT          the metatable of every script's globals (falls back on the guest's base library)
--   events          array of the event names scripts may handle
--   handlers        handlers[event] is an array of { name = script, fn = handler }, in load order
--   begin(deadline, budget_ms), run_guest(name, f, arg), failure(co, err, name), describe(value),
--   contents(t)     as in the kernel
--   turn(op)        the kernel's window on its state; "output" is what the last call printed
-- and returns { compile = f, load = f, unload = f, load_output = f }.
return function(k)
local ENV_MT, EVENT_LIST, handlers = k.ENV_MT, k.events, k.handlers
local begin, run_guest, failure, describe, contents, turn = k.begin, k.run_guest, k.failure, k.describe, k.contents, k.turn
local type, next, rawget, setmetatable, load = type, next, rawget, setmetatable, load
local sort, concat = table.sort, table.concat

local EVENTS = {}
for i = 1, #EVENT_LIST do EVENTS[EVENT_LIST[i]] = true end

-- Compiles a script without running it: nil and the chunk, or "syntax", message, line.
local function compile(name, lua_source)
  local env = setmetatable({}, ENV_MT)
  env._G = env
  local chunk, err = load(lua_source, "=" .. name, "t", env)
  if chunk then return nil, chunk, nil end
  local kind, message, line = failure(nil, err, name)
  return kind == "memory_limit" and kind or "syntax", message, line
end

local build = {}

-- `source` is { name, lua_source }, a table the host filled under its own heap ceiling.
function build.compile(source)
  local kind, message, line = compile(source[1], source[2])
  if kind then return kind, message, line end
  return nil, nil, nil
end

-- Compiles and runs a script's top level. Returns nil and the array of events it handles, or
-- kind, message, line. Output printed at the top level is what load_output() returns next.
function build.load(source, load_deadline, load_budget_ms)
  local name = source[1]
  begin(load_deadline, load_budget_ms)
  local kind, chunk, line = compile(name, source[2])
  if kind then return kind, chunk, line end
  local message
  kind, message, line = run_guest(name, chunk)
  if kind then return kind, message, line end
  local exported = message
  if type(exported) ~= "table" then
    return "runtime", "a script must return a table of event handlers, like return { message = function(msg) ... end }, got "
      .. describe(exported), nil
  end
  exported = contents(exported) -- a table the script froze keeps its fields in a hidden store
  local found = {}
  local event, handler = next(exported)
  while event ~= nil do
    if not EVENTS[event] then
      return "runtime", "unknown event " .. describe(event) .. " in the returned table; events are "
        .. concat(EVENT_LIST, ", "), nil
    end
    if type(handler) ~= "function" then
      return "runtime", "the handler for " .. event .. " must be a function, got " .. describe(handler), nil
    end
    found[#found + 1] = event
    event, handler = next(exported, event)
  end
  sort(found)
  for i = 1, #found do
    local list = handlers[found[i]] or {}
    list[#list + 1] = { name = name, fn = rawget(exported, found[i]) }
    handlers[found[i]] = list
  end
  return nil, found, nil
end

-- Removes script `name`'s handlers, once its top level left the VM too full to run events: what
-- the script kept goes with them (its globals are reachable from its handlers only). The idle
-- runner's stack still holds the function it ran last, the script's chunk: an empty run replaces it.
function build.unload(name)
  for _, list in next, handlers do
    for i = #list, 1, -1 do
      if list[i].name == name then table.remove(list, i) end
    end
  end
  run_guest(name, function() end)
end

-- Top-level output of the last load, in the dispatch result's shape, or nil.
function build.load_output()
  return turn("output")
end

return build
end
