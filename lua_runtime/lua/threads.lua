-- Switches between guest threads: the CPU budget across all of a turn's threads, and the threads
-- the host's preemption watchdog may interrupt.
--
-- The budget hook counts instructions per thread (Lua 5.4 keeps a count hook's count in each
-- lua_State), so a tree of coroutines that each stay under the hook's period would never meet the
-- hook. What bounds them is this: a thread runs at most one HOOK_PERIOD of instructions without
-- its hook looking at the clock, so between two looks the guest runs at most (threads that ran)
-- x HOOK_PERIOD instructions, and every thread that runs was switched to. So every switch is
-- counted, both ways (into a thread, and back to the one that resumed it), and every
-- SWITCH_PERIOD-th switch looks at the clock: whatever the shape of the tree, the clock is read
-- at least every (SWITCH_PERIOD + 1) x HOOK_PERIOD instructions of guest work in total. A
-- generator loop (generic for over coroutine.wrap) pays a counter per switch and a clock read
-- per SWITCH_PERIOD / 2 items.
--
-- The watchdog (lua_runtime/preemption.py) makes the hook of a call's threads fire at their next
-- instruction once the call is past its deadline; it needs the address of every thread the call
-- runs in, and each of those threads must stay alive while the host may write into it. So the
-- first switch into a thread in a call registers it: `live` holds it, then the host is told its
-- address. A reference is only ever dropped after the host has forgotten the address. To keep a
-- call that makes thousands of short-lived coroutines from keeping them all, `live` is compacted
-- when it outgrows `live_max`: only the threads on the chain of resumes (running or normal) stay,
-- the others are registered again if they run again. The runner handlers run in is registered by
-- the kernel itself, once per runner (run_guest), so an event that makes no coroutine costs nothing
-- here.
--
-- The kernel compiles this chunk into a VM with coroutines.lua or task.lua, the only ways guest
-- code switches threads, and calls the factory once, with these in this order:
--   turn(op)        the running turn's state (see the kernel): "spent", "over_budget", "unwind"
--   stop(kind)      ends the running script's turn because a budget is spent
--   arm(co, now)    puts the budget hook on a coroutine; with `now`, to fire at its next instruction
--   preempt, watch  the host's ThreadWatch.update and ThreadWatch.threads.append (which takes the
--                   address of a thread about to be entered), or nil when preemption is off
--   format          Lua's own string.format, whose "%p" of a thread is its lua_State's address
--                   (the guest's may show something else; the host writes at this address)
--   status, resume  coroutine.status and coroutine.resume
--   switch_period   SWITCH_PERIOD
-- and gets back:
--   resume(co, ...)  coroutine.resume for guests: a resume that spent the turn's budget ends the
--                    resuming script's turn too
--   wrap(co)         the function coroutine.wrap returns for `co`
--   enter(co), leave() -> spent   around each resume of the task scheduler's, which handles what
--                    its threads spent itself
--   forget()         the call has ended: see kernel.forget
-- The guest's resumes are written out here, with the switch counted inline, because a generator
-- loop runs one per item.
return function(turn, stop, arm, preempt, watch, format, status, co_resume, SWITCH_PERIOD)
local next, unpack, error = next, table.unpack, error
local LIVE_MIN <const> = 64

local switches = SWITCH_PERIOD
local live, n_live, live_max = {}, 0, LIVE_MIN

-- Forgets every registered thread but those on the chain of resumes.
local function compact()
  local kept, addresses, n = {}, {}, 0
  for co in next, live do
    local s = status(co)
    if s == "running" or s == "normal" then
      n = n + 1
      kept[co] = true
      addresses[n] = format("%p", co)
    end
  end
  preempt("keep", unpack(addresses, 1, n))
  live, n_live = kept, n
  live_max = 2 * n > LIVE_MIN and 2 * n or LIVE_MIN
end

local function register(co)
  if n_live >= live_max then compact() end
  local address = format("%p", co)
  live[co] = true
  n_live = n_live + 1
  watch(address)
end

-- Reads the clock once every SWITCH_PERIOD switches: true once the turn is out of time.
local function out_of_time()
  switches = SWITCH_PERIOD
  return turn("over_budget")
end

local threads = {}

-- The task scheduler is about to resume thread `co`. Once the turn is out of time, `co` stops at
-- its first instruction, and the scheduler finds the turn spent.
function threads.enter(co)
  if preempt and not live[co] then register(co) end
  switches = switches - 1
  if switches <= 0 and out_of_time() then arm(co, true) end
end

-- A resume of the task scheduler's has returned. Returns what the turn has exhausted, if anything.
function threads.leave()
  switches = switches - 1
  if switches <= 0 then out_of_time() end
  return turn("spent")
end

-- The guest's resumes. A resume that ended in a spent budget unwinds the resuming script too: a
-- guest must not go on once its turn is over. A budget is spent only by an error (STOP) in the
-- thread that spent it, or by out_of_time() here: a resume that returned true spent nothing else.
-- A failed resume is also where the clock is read, as the kernel's pcall does: near the C stack's
-- limit the budget hook cannot run.
local function resumed(ok, ...)
  switches = switches - 1
  if switches <= 0 and out_of_time() then turn("unwind") end
  if not ok then
    if turn("spent") or turn("over_budget") then turn("unwind") end
    if (...) == "not enough memory" then stop("memory_limit") end
  end
  return ok, ...
end

function threads.resume(co, ...)
  if preempt and not live[co] then register(co) end
  switches = switches - 1
  if switches <= 0 and out_of_time() then arm(co, true) end
  return resumed(co_resume(co, ...))
end

local function wrap_result(ok, ...)
  switches = switches - 1
  if switches <= 0 and out_of_time() then turn("unwind") end
  if not ok then
    if turn("spent") then turn("unwind") end
    local err = ...
    if err == "not enough memory" then stop("memory_limit") end
    error(err, 0)
  end
  return ...
end

function threads.wrap(co)
  return function(...)
    if preempt and not live[co] then register(co) end
    switches = switches - 1
    if switches <= 0 and out_of_time() then arm(co, true) end
    return wrap_result(co_resume(co, ...))
  end
end

-- The call has ended: the host forgets the threads it entered, then they may be collected.
function threads.forget()
  if n_live > 0 then
    preempt("forget")
    live, n_live, live_max = {}, 0, LIVE_MIN
  end
end

return threads
end
