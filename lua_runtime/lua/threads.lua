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
-- code switches threads, and calls the factory once with `k`:
--   turn(op)        the running turn's state (see the kernel): "spent", "over_budget"
--   arm(co, now)    puts the budget hook on a coroutine; with `now`, to fire at its next instruction
--   preempt         the host's ThreadWatch.update, or nil when preemption is off
--   format, status  Lua's string.format and coroutine.status
--   switch_period   SWITCH_PERIOD
-- and gets back { enter = f(co), leave = f() -> spent, forget = f() }.
return function(k)
local turn, arm, preempt, format, status = k.turn, k.arm, k.preempt, k.format, k.status
local next, unpack = next, table.unpack
local SWITCH_PERIOD = k.switch_period
local LIVE_MIN <const> = 16

local switches = SWITCH_PERIOD
local live, n_live, live_max = {}, 0, LIVE_MIN

-- Counts one switch; every SWITCH_PERIOD-th reads the clock. True once the turn is out of time.
local function count()
  switches = switches - 1
  if switches > 0 then return false end
  switches = SWITCH_PERIOD
  return turn("over_budget")
end

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
  preempt("thread", address)
end

local threads = {}

-- Guest code (or the task scheduler) is about to resume `co`, a thread. Once the turn is out of
-- time, `co` stops at its first instruction, and the resumer learns it from leave().
function threads.enter(co)
  if preempt and not live[co] then register(co) end
  if count() then arm(co, true) end
end

-- A resume has returned (the thread yielded, returned or failed). Returns what the turn has
-- exhausted, if anything.
function threads.leave()
  count()
  return turn("spent")
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
