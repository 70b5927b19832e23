-- The `task` library, as Roblox authors know it, in the shape that fits event handlers, and the
-- timers behind it.
--
-- The kernel compiles this chunk into a VM when a script first reads the `task` global, so that the
-- VMs of guilds whose scripts never use it do not carry it. It returns a factory; the kernel calls
-- it once, with `k`:
--   THREADS, WAITING   the kernel's registries: coroutines it resumes itself (guests can never
--                      resume them), and those of them that wait here (guests cannot close them)
--   WAIT, DONE         what a thread yields to wait (WAIT, due, line) and to say it finished
--   arm(co)            puts the CPU budget hook on a coroutine
--   failure(co, err, name)  the kind, message and line of a thread of script `name` that failed
--   add_error(script, kind, message, line), stop(kind, message), describe(value), clock()
--   turn(op, ...)      the running turn's state (see the kernel; wrapped one by one below)
--   config             { now, max_pending, max_delay, min_wait }: the host's clock (seconds), limits
--   coroutine, getinfo Lua's coroutine library and debug.getinfo (the host drops both libraries
--                      once the kernel is built)
--   threads            threads.lua: enter(co) before every resume, leave() after it, so that the
--                      CPU budget holds across all of a turn's threads
-- and gets back the guest library (`lib`) and the scheduler the kernel drives.
--
-- A *task thread* is a hooked coroutine that the kernel resumes: the runner of a handler that
-- called task.wait, or a thread made by task.delay, task.spawn or task.defer. A waiting thread has
-- a record in `waiting`: its script, when it is due (nil for a deferred one, which runs at the end
-- of the current turn), the line that made it wait, and the arguments of its first run. Timers live
-- in this VM only: they end with it (a reload, an eviction, a rebuild, a restart).
return function(k)
local THREADS, WAITING, WAIT, DONE = k.THREADS, k.WAITING, k.WAIT, k.DONE
local arm, failure, add_error = k.arm, k.failure, k.add_error
local enter_thread, leave_thread = k.threads.enter, k.threads.leave
local stop, describe, clock, turn = k.stop, k.describe, k.clock, k.turn
local math_floor = math.floor
local now, MAX_PENDING, MAX_DELAY, MIN_WAIT = k.config.now, k.config.max_pending, k.config.max_delay, k.config.min_wait

local function spent() return turn("spent") end
local function clear() turn("clear") end
local function current() return turn("current") end
local function in_turn() return turn("in_turn") end
local function over_budget() return turn("over_budget") end
local function budget_ms() return turn("budget_ms") end
-- Ends the running turn because a thread it resumed spent a budget: the line is that thread's.
local function unwind(kind, line) turn("unwind", kind, line) end
local function begin_turn(budget_s) turn("begin", budget_s) end

local type, next, error = type, next, error
local coroutine, getinfo = k.coroutine, k.getinfo
local co_create, co_yield, co_close, co_status = coroutine.create, coroutine.yield, coroutine.close, coroutine.status
local co_resume = coroutine.resume
local co_running, co_isyieldable = coroutine.running, coroutine.isyieldable
local pack, unpack, sort, str_format = table.pack, table.unpack, table.sort, string.format

-- Errors of threads that task.spawn and task.defer ran, reported per turn; past this many, one
-- line says the rest were not, so that a loop of failing spawns cannot flood the report.
local MAX_THREAD_ERRORS = 10

local waiting = {} -- thread -> record
local n_waiting = 0
local seq = 0 -- order of creation, which breaks ties between timers due at the same time
local deferred, first, last = {}, 1, 0 -- the deferred records, in order: deferred[first..last]
local thread_errors = 0

local function enqueue(record)
  seq = seq + 1
  record.seq = seq
  waiting[record.thread] = record
  WAITING[record.thread] = true
  n_waiting = n_waiting + 1
end

local function dequeue(record)
  waiting[record.thread] = nil
  WAITING[record.thread] = nil
  n_waiting = n_waiting - 1
end

-- A thread the kernel resumed yielded WAIT: it waits until `due`.
local function park(co, name, due, line)
  enqueue({ thread = co, script = name, due = due, line = line })
end

-- Resumes `co`, a runner or task thread of script `name`, with `...`, until it finishes, waits or
-- fails. Returns nil, or kind, message, line.
local function resume(name, co, ...)
  turn("enter", name)
  enter_thread(co)
  local ok, tag, due, line = co_resume(co, ...)
  leave_thread()
  if ok and tag ~= DONE then
    if tag == WAIT and not spent() then
      park(co, name, due, line)
      return nil
    end
    ok, tag = false, "attempt to yield from outside a coroutine"
  end
  if not ok or spent() then return failure(co, tag, name) end
  return nil
end

-- The line of the running script's code that called the task function (which called this).
local function caller_line()
  local source = "=" .. current()
  for level = 3, 40 do
    local info = getinfo(level, "Sl")
    if not info then return nil end
    if info.source == source and info.currentline > 0 then return info.currentline end
  end
end

local function check_turn(name)
  if not in_turn() then
    error("task." .. name .. " works in event handlers only, not at the top level of a script (which runs "
      .. "when the server's VM is built)", 3)
  end
end

-- Reserves room for one more waiting thread, or ends the turn with a `limit` error.
local function reserve()
  if n_waiting >= MAX_PENDING then
    stop("limit", "too many pending timers (the limit is " .. MAX_PENDING
      .. " per server: waits, delays and defers not run yet)")
  end
end

-- A wait's length in seconds: at least MIN_WAIT, at most MAX_DELAY (past it, a `limit` error).
local function wait_seconds(name, seconds)
  if seconds == nil then return MIN_WAIT end
  if type(seconds) ~= "number" or seconds ~= seconds then
    error("task." .. name .. " takes a number of seconds, got " .. describe(seconds), 3)
  end
  if seconds > MAX_DELAY then
    stop("limit", str_format("task.%s(%g): the longest wait is %d seconds", name, seconds, MAX_DELAY))
  end
  return seconds < MIN_WAIT and MIN_WAIT or seconds
end

local function check_function(name, f)
  if type(f) ~= "function" then
    error("task." .. name .. " takes a function to run, got " .. describe(f), 3)
  end
end

-- A task thread: runs f(...) then yields DONE, as a runner does.
local function body(f, ...)
  f(...)
  return DONE
end

local function new_thread()
  local co = arm(co_create(body))
  THREADS[co] = true
  return co
end

-- Reports the error of a thread that task.spawn or task.defer ran, up to MAX_THREAD_ERRORS a turn.
local function report_thread_error(name, kind, message, line)
  thread_errors = thread_errors + 1
  if thread_errors < MAX_THREAD_ERRORS then
    add_error(name, kind, message, line)
  elseif thread_errors == MAX_THREAD_ERRORS then
    add_error(name, kind, "more task threads failed in this turn; only the first "
      .. (MAX_THREAD_ERRORS - 1) .. " errors are reported", nil)
  end
end

-- A thread that task.spawn ran failed: report it, unless it spent the turn's budget, which ends
-- the turn (a `limit`, a time or memory limit) as if the spawning code had spent it.
local function thread_failed(name, kind, message, line)
  if spent() or kind == "memory_limit" then unwind(kind, line) end
  report_thread_error(name, kind, message, line)
end

-- The guest library ---------------------------------------------------------------------------------

local lib = {}

-- Parks the running thread for `seconds` (a floor of MIN_WAIT); returns the seconds it waited.
function lib.wait(seconds)
  check_turn("wait")
  local co, main = co_running()
  if main or not THREADS[co] then
    error("task.wait cannot wait inside a coroutine made with coroutine.create or coroutine.wrap; "
      .. "run that code with task.spawn or task.delay instead", 2)
  end
  if not co_isyieldable() then
    error("task.wait cannot wait here: it was called from code that cannot be suspended (a metamethod "
      .. "such as __tostring, or a function called by a library function such as table.sort)", 2)
  end
  seconds = wait_seconds("wait", seconds)
  reserve()
  local started = now()
  local resumed_at = co_yield(WAIT, started + seconds, caller_line())
  -- To the millisecond, as on Roblox the figure is only as fine as its frames: to the microsecond
  -- it told a script how long its worker was held up by other servers' events.
  return math_floor((resumed_at - started) * 1000 + 0.5) / 1000
end

function lib.delay(seconds, f, ...)
  check_turn("delay")
  seconds = wait_seconds("delay", seconds)
  check_function("delay", f)
  reserve()
  local co = new_thread()
  enqueue({ thread = co, script = current(), due = now() + seconds, line = caller_line(), args = pack(f, ...) })
  return co
end

function lib.spawn(f, ...)
  check_turn("spawn")
  check_function("spawn", f)
  local co = new_thread()
  local name = current()
  local kind, message, line = resume(name, co, f, ...)
  -- A thread that failed outside the script's code (in a library function it was given) has no
  -- line of the script's own: the line that spawned it stands in.
  if kind then thread_failed(name, kind, message, line or caller_line()) end
  return co
end

function lib.defer(f, ...)
  check_turn("defer")
  check_function("defer", f)
  reserve()
  local co = new_thread()
  local record = { thread = co, script = current(), line = caller_line(), args = pack(f, ...) }
  enqueue(record)
  last = last + 1
  deferred[last] = record
  return co
end

function lib.cancel(thread)
  check_turn("cancel")
  if type(thread) ~= "thread" then
    error("task.cancel takes a thread (what task.delay, task.spawn and task.defer return), got "
      .. describe(thread), 2)
  end
  local record = waiting[thread]
  if record then
    if record.script ~= current() then error("task.cancel cannot cancel another script's thread", 2) end
    dequeue(record)
    co_close(thread)
    return
  end
  local status = co_status(thread)
  if status == "running" or status == "normal" then
    error("task.cancel cannot cancel a running thread", 2)
  end
  -- A kernel thread not waiting has finished (or is an idle runner): nothing to cancel. A coroutine
  -- of the script's own is closed, as Roblox does.
  if status == "suspended" and not THREADS[thread] then co_close(thread) end
end

-- The scheduler, driven by the kernel ---------------------------------------------------------------

local scheduler = { lib = lib, park = park }

local function run_record(record, at)
  dequeue(record)
  local args = record.args
  if args then return resume(record.script, record.thread, unpack(args, 1, args.n)) end
  return resume(record.script, record.thread, at)
end

function scheduler.drop_deferred()
  while first <= last do
    local record = deferred[first]
    deferred[first] = nil
    first = first + 1
    if waiting[record.thread] == record then
      dequeue(record)
      co_close(record.thread)
    end
  end
  first, last = 1, 0
end

-- Called after each handler and each timer's resumption, with the kind of its error (nil when it
-- ended well): runs the threads it deferred, in order, in the same turn, unless its budget is
-- spent. Returns the kind that ends the turn: "time_limit" or "memory_limit" when the budget is
-- gone, else the handler's kind (nil or another).
function scheduler.after_turn(kind)
  if first > last then
    thread_errors = 0
    return kind
  end
  if kind == "time_limit" or kind == "memory_limit" then
    scheduler.drop_deferred()
    thread_errors = 0
    return kind
  end
  clear()
  local ending = kind
  while first <= last do
    local record = deferred[first]
    deferred[first] = nil
    first = first + 1
    if waiting[record.thread] == record and over_budget() then
      -- Threads that each defer the next one and end at once: only this check can stop them.
      add_error(record.script, "time_limit", "time limit exceeded (" .. budget_ms() .. " ms of CPU per event)",
        record.line)
      dequeue(record)
      scheduler.drop_deferred()
      ending = "time_limit"
    elseif waiting[record.thread] == record then
      local failed, message, line = run_record(record, nil)
      if failed == "time_limit" or failed == "memory_limit" then
        add_error(record.script, failed, message, line or record.line)
        scheduler.drop_deferred()
        ending = failed
      elseif failed then
        -- Capped as spawned threads' are: deferred threads that each fail and defer the next one
        -- (a `limit` once the pending timers are full) would report thousands in one event.
        report_thread_error(record.script, failed, message, line or record.line)
        clear()
      end
    end
  end
  first, last = 1, 0
  thread_errors = 0
  return ending
end

local function by_due(a, b)
  if a.due ~= b.due then return a.due < b.due end
  return a.seq < b.seq
end

-- The records due at `at`, in due order.
local function due_records(at)
  local due = {}
  for _, record in next, waiting do
    if record.due and record.due <= at then due[#due + 1] = record end
  end
  sort(due, by_due)
  return due
end

-- Resumes the threads due at `at`, each in a turn of its own (budget_s of CPU), and the threads
-- each one defers; starts no new one once `spend_s` of CPU has gone by. Returns the names of the
-- scripts whose threads ran, in order, or nil when none did.
function scheduler.run_due(at, budget_s, spend_s)
  local due = due_records(at)
  local ran, n_ran = nil, 0
  local started = clock()
  for i = 1, #due do
    local record = due[i]
    -- A thread resumed before it may have cancelled this one.
    if waiting[record.thread] == record then
      if n_ran > 0 and clock() - started >= spend_s then break end
      begin_turn(budget_s)
      local kind, message, line = run_record(record, at)
      if kind then add_error(record.script, kind, message, line or record.line) end
      scheduler.after_turn(kind)
      n_ran = n_ran + 1
      ran = ran or {}
      ran[n_ran] = record.script
    end
  end
  return ran
end

-- Drops the timers due at `at` without running them; returns { script, line } for each.
function scheduler.drop_due(at)
  local due = due_records(at)
  local dropped = {}
  for i = 1, #due do
    local record = due[i]
    dequeue(record)
    co_close(record.thread)
    dropped[i] = { script = record.script, line = record.line }
  end
  return dropped
end

function scheduler.count()
  return n_waiting
end

function scheduler.next_due()
  local earliest = nil
  for _, record in next, waiting do
    local due = record.due
    if due and (earliest == nil or due < earliest) then earliest = due end
  end
  return earliest
end

return scheduler
end
