-- The guest's `coroutine` library: Lua's, with every coroutine a script makes under the CPU budget
-- hook, and the kernel's own threads out of a script's reach.
--
-- The kernel compiles this chunk into a VM when a script first reads the `coroutine` global, so that
-- the VMs of guilds whose scripts never use coroutines do not carry it. It returns a factory; the
-- kernel calls it once, with `k`:
--   THREADS, WAITING   the kernel's registries: coroutines it resumes itself (guests can never
--                      resume them), and those of them that wait for a timer (guests cannot close them)
--   arm(co)            puts the CPU budget hook on a coroutine
--   stop(kind)         ends the running script's turn because a budget is spent
--   turn(op)           the running turn's state (see the kernel): "spent", "over_budget", "unwind"
--   coroutine          Lua's coroutine library (the host drops it once the kernel is built)
--   threads            threads.lua: enter(co) before every resume, leave() after it, so that the
--                      CPU budget holds across all of a turn's coroutines
-- and gets back the library, which the kernel hands scripts as a read-only view.
return function(k)
local THREADS, WAITING, arm, stop, turn = k.THREADS, k.WAITING, k.arm, k.stop, k.turn
local enter, leave = k.threads.enter, k.threads.leave
local coroutine, error, type = k.coroutine, error, type
local co_create, co_resume, co_close = coroutine.create, coroutine.resume, coroutine.close

-- A resume that ended in a spent budget unwinds the resuming script too: a guest must not go on once
-- its turn is over. A failed resume is also where the clock is read, as the kernel's pcall does:
-- near the C stack's limit the budget hook cannot run.
local function resumed(ok, ...)
  if leave() or (not ok and turn("over_budget")) then turn("unwind") end
  if not ok and (...) == "not enough memory" then stop("memory_limit") end
  return ok, ...
end

local function wrap_result(ok, ...)
  if leave() then turn("unwind") end
  if not ok then
    local err = ...
    if err == "not enough memory" then stop("memory_limit") end
    error(err, 0)
  end
  return ...
end

return {
  -- Hooks are per coroutine in Lua 5.4: every coroutine a script creates gets the budget hook.
  create = function(f) return arm(co_create(f)) end,
  resume = function(co, ...)
    if THREADS[co] then return false, "cannot resume a coroutine that Warden runs (a handler's or a task's)" end
    if type(co) == "thread" then enter(co) end
    return resumed(co_resume(co, ...))
  end,
  wrap = function(f)
    local co = arm(co_create(f))
    return function(...)
      enter(co)
      return wrap_result(co_resume(co, ...))
    end
  end,
  yield = coroutine.yield,
  status = coroutine.status,
  running = coroutine.running,
  isyieldable = coroutine.isyieldable,
  close = function(co)
    if WAITING[co] then error("cannot close a thread that waits for its timer; use task.cancel", 2) end
    return co_close(co)
  end,
}
end
