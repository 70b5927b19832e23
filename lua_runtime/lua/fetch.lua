-- The fetch(name) that the Luau library and the kernel load host modules with.
--
-- Called with the host's fetch (lua_runtime/sandbox.py), which hands over the bytecode of host
-- module `name` with the host's heap ceiling lifted for the load, or nil, leaving the guest's
-- ceiling in force, when the guest's heap has no room for the module under its own ceiling. The
-- guest's own allocations collect garbage before they fail; so does this, once, before it gives
-- up with the guest's memory error (the kernel reports it as the memory limit).
local host_fetch = ...
local collect, error = collectgarbage, error
return function(name)
  local chunk = host_fetch(name)
  if chunk == nil then
    collect()
    chunk = host_fetch(name)
    if chunk == nil then error("not enough memory", 0) end
  end
  return chunk
end
