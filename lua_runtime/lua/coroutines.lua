-- The guest's `coroutine` library: Lua's, with every coroutine a script makes under the CPU budget
-- hook, and the kernel's own threads out of a script's reach.
--
-- The kernel compiles this chunk into a VM when a script first reads the `coroutine` global, so that
-- the VMs of guilds whose scripts never use coroutines do not carry it. It returns a factory; the
-- kernel calls it once, with `k`:
--   THREADS, WAITING   the kernel's registries: coroutines it resumes itself (guests can never
--                      resume them), and those of them that wait for a timer (guests cannot close them)
--   arm(co)            puts the CPU budget hook on a coroutine
--   coroutine          Lua's coroutine library (the host drops it once the kernel is built)
--   threads            threads.lua, which resumes guest coroutines so that the CPU budget holds
--                      across all of a turn's threads
-- and gets back the library, which the kernel hands scripts as a read-only view.
return function(k)
local THREADS, WAITING, arm = k.THREADS, k.WAITING, k.arm
local threads_resume, threads_wrap = k.threads.resume, k.threads.wrap
local coroutine, error, type = k.coroutine, error, type
local co_create, co_close = coroutine.create, coroutine.close

return {
  -- Hooks are per coroutine in Lua 5.4: every coroutine a script creates gets the budget hook.
  create = function(f) return arm(co_create(f)) end,
  resume = function(co, ...)
    if THREADS[co] then return false, "cannot resume a coroutine that Warden runs (a handler's or a task's)" end
    if type(co) ~= "thread" then return coroutine.resume(co, ...) end -- the C function's error
    return threads_resume(co, ...)
  end,
  wrap = function(f) return threads_wrap(arm(co_create(f))) end,
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
