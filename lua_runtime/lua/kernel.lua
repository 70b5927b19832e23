-- The host side of one guild VM.
--
-- Runs once per VM, with the full standard library, before any guest code exists. It builds the
-- guest environment out of safe pieces, then runs guest code (a script's top level, or its handler
-- for an event) under the budgets: CPU through a count hook on every coroutine guest code runs in,
-- actions and print output through counters. Guest code never sees this chunk's locals, so the
-- originals captured here (pcall, load, debug.sethook, the C pattern functions...) stay out of reach.
--
-- Called with one table, `config`, built by lua_runtime/sandbox.py:
--   clock          function returning this thread's CPU time in seconds (Python's time.thread_time)
--   hook_period    instructions between two budget checks
--   switch_period  switches between guest threads between two budget checks (threads.lua)
--   preempt, watch the host's preemption watch (lua_runtime/preemption.py: ThreadWatch.update
--                  and ThreadWatch.threads.append), told which threads guest code runs in; nil
--                  when preemption is off
--   max_actions    actions one event may request
--   window_message the message of the limit error of a script that asks for more actions than its
--                  server's action window allows (each call gets the allowance left in it)
--   max_output     bytes of print output kept per event
--   memory_message the message of a memory_limit error (the host formats it; lupa enforces the ceiling)
--   fetch, fetched fetch(name) returns the bytecode of host module `name` (patterns,
--                  pattern_engine, discord, kv, task, coroutines, build) with the host's heap
--                  ceiling raised for the load; fetched() puts the guest's ceiling back
--   kv             the guild's store, kv(op, key, arg, ttl) -> ok, result, is_quota, or nil
--   kv_max_key_bytes  longest KV key
--   luau           what lua_runtime/luau/stdlib.lua returned: { globals = {...}, tostring = f,
--                  readonly = f, contents = f, lazy = f, format = f }
--   events         array of the event names scripts may handle
-- Returns the kernel: { build = f, dispatch = f, running = f, configure_tasks = f,
-- run_timers = f, drop_due_timers = f, timers = f, forget = f }. Loading scripts is build()'s
-- (build.lua).
--
-- Memory counts more than speed here: every guild VM carries what this chunk leaves behind, and
-- each function costs its prototype (about 2.5 times its bytecode) whether it ever runs or not. So
-- code that only the build needs is in build.lua, code that few scripts need is loaded on first
-- use (task.lua, coroutines.lua, the pattern wrappers, the modules), and the config table is not
-- kept.
--
-- The `task` library (task.lua) is compiled into the VM when a script first reads the `task` global;
-- this chunk keeps only what running guest code in threads needs: the registry of the coroutines it
-- runs, and the WAIT sentinel a waiting thread yields to the kernel.
local config = ...

local clock = config.clock
local HOOK_PERIOD = config.hook_period
local SWITCH_PERIOD = config.switch_period
local preempt, watch_thread = config.preempt, config.watch
local MAX_ACTIONS = config.max_actions
local MAX_OUTPUT = config.max_output
local WINDOW_MESSAGE = config.window_message
-- The memory-limit message, made by the host: it is needed when the heap is full, where building
-- it (string.format, which may have to be loaded first) could itself run out of memory.
local MEMORY_MESSAGE = config.memory_message
local luau_tostring = config.luau.tostring
local readonly, contents, lazy = config.luau.readonly, config.luau.contents, config.luau.lazy

local type, next, select, error, rawget, tonumber = type, next, select, error, rawget, tonumber
local setmetatable, getmetatable, load, pcall = setmetatable, getmetatable, load, pcall
-- The host drops the os, coroutine and debug libraries once the kernel is built (sandbox.py): what
-- the kernel and task.lua need of them is held here.
local raw_coroutine = coroutine
local co_create, co_resume, co_status = coroutine.create, coroutine.resume, coroutine.status
local sethook, getinfo = debug.sethook, debug.getinfo
local str_find, str_gsub, str_sub = string.find, string.gsub, string.sub
-- Lua's own string.format: the library's (Luau's) is compiled into the VM on its first call.
local str_format = config.luau.format
local str_match = string.match
local utf8_len = utf8.len
local tconcat = table.concat

-- Unwinds guest code once a budget is spent. What was spent is in `exhausted`, not in this value,
-- so a guest that catches it learns nothing and changes nothing.
local STOP = setmetatable({}, { __metatable = false, __tostring = function() return "stopped" end })

-- Per-call state (one event, or one run of due timers), and per-turn state (the event's handlers
-- share one turn; each timer's resumption is a turn of its own). `exhausted` is nil, "time_limit",
-- "memory_limit" or "limit"; `exhausted_line` is the author's line when the stop happened in another
-- thread than the one that reports it (a task.spawn'ed thread).
local deadline, budget_ms = 0, 0
local exhausted, exhausted_message, exhausted_line = nil, nil, nil
local actions, n_actions, turn_actions = {}, 0, 0
local out_script, out_text, n_output, output_bytes = {}, {}, 0, 0
local errors, n_errors = {}, 0
local current = nil -- name of the script whose code is running
local in_turn = false -- true while a handler or a timer runs: only then do task functions work

local function sanitize(s)
  -- Strings cross into Python, which refuses invalid UTF-8: replace every byte of a bad string's
  -- non-ASCII part rather than fail the whole event.
  if utf8_len(s) then return s end
  return (str_gsub(s, "[\128-\255]", "\239\191\189"))
end

local function describe(v)
  local t = type(v)
  if t == "string" then
    if #v <= 40 then return str_format("%q", v) end
    -- Cut before a character that does not fit whole: a message cut inside one is not UTF-8 text,
    -- and the host would show every non-ASCII byte of it as a replacement character.
    local cut = 40
    while cut > 36 and str_find(v, "^[\128-\191]", cut + 1) do cut = cut - 1 end
    return str_format("%q", str_sub(v, 1, cut) .. "...")
  elseif t == "number" or t == "boolean" or t == "nil" then
    return luau_tostring(v)
  end
  return "a " .. t
end

-- The budget hook. Once anything is exhausted it fires on every instruction, so that a guest
-- pcall/xpcall that swallows STOP gets it again on its very next instruction.
local hook
hook = function()
  if exhausted or clock() > deadline then
    if not exhausted then exhausted = "time_limit" end
    sethook(hook, "", 1)
    error(STOP, 0)
  end
end

-- Ends the running script's turn because of a quota (kind "limit"), uncatchable like the others.
local function stop(kind, message)
  exhausted, exhausted_message = kind, message
  error(STOP, 0)
end

local function rethrow_if_spent(ok, ...)
  if not ok then
    -- A caught error is also where the clock is read: near the C stack's limit the budget hook
    -- cannot run (calling it raises "C stack overflow" instead), and a guest that catches that
    -- error would otherwise run on, unchecked, until its heap is full.
    if exhausted or clock() > deadline then
      exhausted = exhausted or "time_limit"
      error(STOP, 0)
    end
    if (...) == "not enough memory" then stop("memory_limit") end
  end
  return ok, ...
end

-- Guest versions of the functions that could otherwise outrun a budget. ----------------------------

local function guest_pcall(f, ...)
  return rethrow_if_spent(pcall(f, ...))
end

-- The real xpcall runs its message handler with hooks off, so a handler that loops would never be
-- stopped. Here the handler runs as ordinary guest code, after the failed call has unwound.
local function guest_xpcall(f, handler, ...)
  local function after(ok, ...)
    if ok then return true, ... end
    rethrow_if_spent(false, ...)
    return false, select(2, rethrow_if_spent(pcall(handler, (...))))
  end
  return after(pcall(f, ...))
end

local function guest_setmetatable(t, mt)
  if type(mt) == "table" and (rawget(mt, "__gc") ~= nil or rawget(mt, "__close") ~= nil) then
    -- Finalizers and close handlers run with hooks off: nothing could stop one that loops.
    error("__gc and __close metamethods are not available in Warden scripts", 2)
  end
  return setmetatable(t, mt)
end

local function guest_collectgarbage(option)
  if option == nil or option == "count" then return collectgarbage("count") end
  error("collectgarbage only supports \"count\" in Warden scripts", 2)
end

-- Checks the CPU budget now. The hook only looks at the clock every HOOK_PERIOD instructions, and a
-- loop of costly C calls (a 4 MB string.rep, a sort of 500,000 numbers) does few instructions
-- between two looks: wrappers of such functions call this first when their input is large.
local function charge()
  if exhausted or clock() > deadline then
    if not exhausted then exhausted = "time_limit" end
    error(STOP, 0)
  end
end

-- Above this many bytes or elements, a C call is costly enough to check the budget first.
local COSTLY <const> = 65536

-- The results of `pcall(f, ...)` when it succeeded; else its error, raised again at the script's
-- line, with the name `label` that a C function called through pcall cannot give itself ("bad
-- argument #1 to 'upper'" where Lua writes '?'). Callers tail-call it: level 2 is then the script.
-- An error that has a line already (raised by a script's function that f called) keeps it.
local function finish(label, ok, ...)
  if ok then return ... end
  local message = ...
  if type(message) ~= "string" or message == "not enough memory" or exhausted
    or str_find(message, "^[^\n:]*:%d+: ") then
    error(message, 0)
  end
  error((str_gsub(message, "^bad argument (#%d+) to '%?'", "bad argument %1 to '" .. label .. "'")), 2)
end

-- Puts the budget hook on coroutine `co`; with `now`, to fire at its next instruction (a thread
-- entered once its turn is out of time).
local function arm(co, now)
  sethook(co, hook, "", now and 1 or HOOK_PERIOD)
  return co
end

-- THREADS: the coroutines the kernel resumes itself, the runners handlers run in (see run_guest) and
-- task threads (task.lua). A script can get hold of one with coroutine.running(); resuming one
-- would let it run in another script's turn, or before its timer is due, so guests never can.
-- WAITING: those of them waiting for a timer or a deferred turn. Closing one would lose its timer
-- behind the task library's back (task.cancel is the way); closing any other is harmless, since the
-- kernel never reuses a runner that is not suspended where it left it.
local THREADS = setmetatable({}, { __mode = "k" })
local WAITING = setmetatable({}, { __mode = "k" })
-- Lines of print output kept per event. Each line becomes a run-log row (the bot keeps 200 per
-- server): a loop of empty prints, a byte each, made 4,096 rows of every event, a write flood for
-- the database that also wiped the server's log each time.
local MAX_OUTPUT_LINES = 100
local function guest_print(...)
  -- Once the event's output is full, what a print would make is dropped: it is not made at all.
  if output_bytes >= MAX_OUTPUT then return end
  if n_output >= MAX_OUTPUT_LINES - 1 then
    n_output = MAX_OUTPUT_LINES
    out_script[n_output], out_text[n_output] = current, "... (print output cut: " .. MAX_OUTPUT_LINES .. " lines per event)"
    output_bytes = MAX_OUTPUT
    return
  end
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = luau_tostring((select(i, ...))) end
  local text = tconcat(parts, "\t")
  -- Every line costs at least a byte, so that a flood of empty prints is bounded too. A text longer
  -- than what is left is cut before its check, which costs its length.
  if output_bytes + #text + 1 > MAX_OUTPUT then
    text = str_sub(text, 1, MAX_OUTPUT - output_bytes) .. "... (print output cut: " .. MAX_OUTPUT .. " bytes per event)"
    text = sanitize(text)
    output_bytes = MAX_OUTPUT
  else
    text = sanitize(text)
    output_bytes = output_bytes + #text + 1
  end
  n_output = n_output + 1
  out_script[n_output], out_text[n_output] = current, text
end

-- The actions the server may still request in this call: what its action window has left (the
-- worker keeps the window across events and timers; dispatch and run_timers get the allowance).
local action_allowance = math.huge

local function push_action(action)
  if n_actions - turn_actions >= MAX_ACTIONS then
    stop("limit", "too many actions in one event (the limit is " .. MAX_ACTIONS .. ")")
  end
  if n_actions >= action_allowance then stop("limit", WINDOW_MESSAGE) end
  action.script = current
  n_actions = n_actions + 1
  actions[n_actions] = action
end

-- C functions whose work grows with their arguments (string.rep, table.move, table.sort...): no
-- hook interrupts a C function, so c_calls.lua wraps each of them to check the budget as its work
-- goes, or to refuse arguments that would make it unbounded. Its code is compiled into a VM on a
-- script's first call of one of them; until then, stand-ins wait in their place (set below).
-- C_CALLS names them by library, and holds the C functions (or the Luau library's) once the
-- stand-ins are in.
local LIBRARIES = { string = string, table = table, utf8 = utf8 }
local C_CALLS = {
  string = { rep = 0, upper = 0, lower = 0, reverse = 0, byte = 0, sub = 0, format = 0, split = 0, pack = 0,
             packsize = 0, unpack = 0 },
  table = { insert = 0, remove = 0, move = 0, sort = 0, concat = 0, unpack = 0 },
  utf8 = { len = 0, codepoint = 0, offset = 0, codes = 0 },
}
-- The Luau library's long string.format and %q check the budget too (config.luau.C: stdlib.lua's
-- table of the C functions its groups use).
config.luau.C.charge = charge

-- Host modules are compiled into the VM on first use only: every guild VM would otherwise carry
-- all of them, whether its scripts need them or not. A module takes the library functions it uses
-- when it loads, or when its factory runs: it gets the C functions, which the libraries hold again
-- meanwhile. (The guest's versions check the budget of a script's call, and the first call of one
-- compiles c_calls.lua: build.lua's sort would do that in every VM.)
local fetch, fetched = config.fetch, config.fetched
local function swap_c_functions()
  for library, functions in next, C_CALLS do
    local lib = LIBRARIES[library]
    for name, f in next, functions do functions[name], lib[name] = lib[name], f end
  end
end
local function with_c_functions(f, ...)
  swap_c_functions()
  local ok, result = pcall(f, ...)
  swap_c_functions()
  if not ok then error(result, 0) end
  return result
end
local function host_module(name)
  local chunk = fetch(name)
  local ok, main = pcall(load, chunk, "=" .. name, "b")
  fetched()
  if not ok or not main then error("cannot load host module " .. name, 0) end
  local module = with_c_functions(main)
  if type(module) ~= "function" then return module end
  return function(...) return with_c_functions(module, ...) end -- a factory
end

local c_calls = nil -- c_calls.lua's wrappers, by the function each stands for, once it is in
local os_date, os_time, raw_metatable = os.date, os.time, debug.getmetatable
local function install_c_calls()
  c_calls = host_module("c_calls")({
    charge = charge, finish = finish, contents = contents, metatable = raw_metatable, find = str_find,
    match = str_match, date = os_date, time = os_time,
    long_calls = function() return host_module("long_calls") end,
  })
  for library, functions in next, C_CALLS do
    local lib = LIBRARIES[library]
    for name, f in next, functions do lib[name] = c_calls[f] end
  end
  return c_calls
end
-- The stand-in for C function f: installs c_calls.lua and calls f's wrapper.
local function c_call(f)
  return function(...) return (c_calls or install_c_calls())[f](...) end
end
for library, functions in next, C_CALLS do
  local lib = LIBRARIES[library]
  for name in next, functions do
    functions[name] = lib[name]
    lib[name] = c_call(lib[name])
  end
end
config.luau.globals.unpack = table.unpack -- the global is table.unpack, as in Luau

-- Lua pattern matching runs in C, out of the hook's reach: patterns.lua routes risky calls to a
-- matcher written in Lua. Until a script first calls one of the four, stand-ins wait in their place.
local C_PATTERNS = {
  find = string.find, match = string.match, gmatch = string.gmatch, gsub = string.gsub, charge = charge,
}
local safe_patterns = nil
local function install_patterns()
  if safe_patterns then return safe_patterns end -- a script kept a stand-in, or the kernel's find
  safe_patterns = host_module("patterns")(C_PATTERNS, function() return host_module("pattern_engine") end)
  for name, f in next, safe_patterns do string[name] = f end
  return safe_patterns
end
for name in next, C_PATTERNS do
  if name ~= "charge" then string[name] = function(...) return install_patterns()[name](...) end end
end
-- Most scripts search for plain text (a word in a message), which C does with memchr/memcmp and
-- no backtracking: string.find answers those calls itself, so that patterns.lua is compiled into a
-- VM only once a script uses a real pattern. A search is plain when the fourth argument says so,
-- or when the pattern has no special character (C then searches plainly too). Its cost bound is
-- patterns.lua's PLAIN_BUDGET (keep the two equal): at most n * (256 + m) / 64 matcher steps for
-- m bytes in n. Every other call, and every call once patterns.lua is in, goes to patterns.lua.
local PLAIN_BUDGET <const> = 2 ^ 25
local SPECIALS <const> = "[%^%$%*%+%?%.%(%)%[%]%%%-]"
string.find = function(...)
  local s, p, init, plain = ...
  -- init as C accepts it: an integer, or a float with an integer's value (Luau's numbers are floats)
  if type(s) == "string" and type(p) == "string"
    and (init == nil or (type(init) == "number" and init == init // 1 and init > -2 ^ 53 and init < 2 ^ 53))
    and #s * (256 + #p) <= PLAIN_BUDGET and (plain or (#p <= 256 and not str_find(p, SPECIALS))) then
    if #s > COSTLY then charge() end
    return str_find(s, p, init, true)
  end
  return install_patterns().find(...)
end
string.dump = nil

-- Lua seeds math.random from the time and the address of the VM's state, which a few results of
-- math.random give away, and math.randomseed() reseeds the same way and returns both. Each VM is
-- seeded from the host's randomness instead (config.random_seed, two integers), and
-- math.randomseed takes a seed, as Luau's does, and returns nothing.
local c_randomseed, tointeger, fmod = math.randomseed, math.tointeger, math.fmod
if config.random_seed then c_randomseed(config.random_seed[1], config.random_seed[2]) end
math.randomseed = function(seed)
  local n = tonumber(seed)
  if type(n) ~= "number" then
    local got = seed == nil and "no value" or type(seed)
    error("invalid argument #1 to 'randomseed' (number expected, got " .. got .. ")", 2)
  end
  c_randomseed(tointeger(n - fmod(n, 1)) or 0) -- Luau truncates; nan and inf seed as 0
end

-- tonumber reads the whole of a string (strtod), however long: a long one checks the budget first,
-- so that a loop of them is stopped in time.
local function guest_tonumber(v, ...)
  if type(v) == "string" and #v > COSTLY then charge() end
  return finish("tonumber", pcall(tonumber, v, ...))
end

local string_mt = getmetatable("")
string_mt.__metatable = "The metatable is locked"

local kv_call, KV_MAX_KEY_BYTES = config.kv, config.kv_max_key_bytes
local task_config = nil -- what the host gave configure_tasks (read by @warden/discord and task.lua)

local modules = {}
local module_loaders = {
  ["@warden/discord"] = function()
    -- The builders' code is compiled on a script's first use of one (most VMs sit idle, and many
    -- never act between two evictions). delete_after has the ceiling of task delays (discord.lua
    -- falls back to 900 s without task).
    return lazy(function()
      return host_module("discord")(push_action, {
        describe = describe, utf8_len = utf8_len, find = str_find, contents = contents, charge = charge,
        max_delete_after = task_config and task_config.max_delay,
      })
    end)
  end,
  ["@warden/kv"] = function()
    if not kv_call then error("@warden/kv is not available in this sandbox (it has no store)", 0) end
    return host_module("kv")(kv_call, fetched, {
      describe = describe, utf8_len = utf8_len, gsub = str_gsub, stop = stop, max_key_bytes = KV_MAX_KEY_BYTES,
    })
  end,
}
local module_names = {}
for name in next, module_loaders do module_names[#module_names + 1] = name end
C_CALLS.table.sort(module_names)
module_names = tconcat(module_names, ", ")

local function guest_require(name)
  local m = modules[name]
  if m ~= nil then return m end
  local loader = type(name) == "string" and module_loaders[name]
  if not loader then
    error("cannot require " .. describe(name) .. ": Warden scripts can require " .. module_names, 2)
  end
  m = readonly(loader())
  modules[name] = m
  return m
end

local BASE = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, select = select,
  rawequal = rawequal, rawget = rawget, rawset = rawset, rawlen = rawlen,
  getmetatable = getmetatable, setmetatable = guest_setmetatable,
  tonumber = guest_tonumber, tostring = luau_tostring, type = type,
  pcall = guest_pcall, xpcall = guest_xpcall, print = guest_print, require = guest_require,
  collectgarbage = guest_collectgarbage,
  _VERSION = "Luau",
}
for name, value in next, config.luau.globals do BASE[name] = value end
-- Library tables are shared by the guild's scripts and by host modules loaded later: scripts see
-- them read-only, as in Luau, so that no script can change what another one (or the kernel) calls.
BASE.string, BASE.table, BASE.math, BASE.utf8 = readonly(string), readonly(table), readonly(math), readonly(utf8)
BASE.bit32 = readonly(BASE.bit32)
-- The guest's os library; its view is made on a script's first read of `os` (see BASE's __index).
-- os.clock is the CPU time this VM's scripts have used, in seconds. Lua's is the whole process's,
-- and the thread's CPU clock counts every guild its worker serves: either would show a script how
-- busy the other guilds are. A call (an event, a timer's turn, a build) starts at its deadline
-- less its budget; within it, the VM's clock runs with the thread's, and between calls it stands
-- still: a call adds what it used up to the last time its scripts read the clock.
local vm_seconds, vm_call_deadline, vm_clock_read = 0, nil, 0
local function vm_clock()
  if deadline ~= vm_call_deadline then vm_seconds, vm_call_deadline = vm_clock_read, deadline end
  local used = vm_seconds + (clock() - (deadline - budget_ms / 1000))
  if used > vm_clock_read then vm_clock_read = used end -- it never runs backwards
  return vm_clock_read
end
local OS = { time = os.time, clock = vm_clock, date = c_call(os_date), difftime = os.difftime }

-- Each script gets its own globals table that falls back on BASE, so one script's globals never
-- clobber another's. The metatable is locked: a script cannot reach BASE through it.
local ENV_MT = { __index = BASE, __metatable = false }

-- The event names scripts may handle, for build.lua.
local EVENT_LIST = config.events

-- Running guest code ------------------------------------------------------------------------------

local tasks = nil -- the task library's scheduler, once a script has used `task` (see below)
local threads = nil -- threads.lua, once a script has used `task` or `coroutine` (see below)

local function begin(new_deadline, new_budget_ms)
  deadline, budget_ms = new_deadline, new_budget_ms
  -- The host forgets the threads the last call entered when it ends (kernel.forget); a call that
  -- failed in the kernel may have left some.
  if threads then threads.forget() end
  exhausted, exhausted_message, exhausted_line = nil, nil, nil
  in_turn = false
  if n_actions > 0 then actions, n_actions = {}, 0 end
  turn_actions = 0
  if n_output > 0 then out_script, out_text, n_output = {}, {}, 0 end
  output_bytes = 0
  if n_errors > 0 then errors, n_errors = {}, 0 end
  -- Deferred threads are always run or dropped before a call returns; a kernel failure (a host
  -- out-of-memory error) can leave some behind, and they must not run in another event's turn.
  if tasks then tasks.drop_deferred() end
end

local function add_error(script, kind, message, line)
  n_errors = n_errors + 1
  errors[n_errors] = { script = script, kind = kind, message = message, line = line }
end

local function error_text(err)
  local t = type(err)
  if t == "string" then return err end
  if t == "number" then return luau_tostring(err) end
  return "(error object is a " .. t .. " value)"
end

-- The innermost line of the script's own source on a failed coroutine's stack.
local function author_line(co, source)
  for level = 0, 200 do
    local info = getinfo(co, level, "Sl")
    if not info then return nil end
    if info.source == source and info.currentline and info.currentline > 0 then return info.currentline end
  end
end

local function failure(co, err, name)
  local kind, message = exhausted, nil
  if kind == "time_limit" then
    message = "time limit exceeded (" .. budget_ms .. " ms of CPU per event)"
  elseif kind == "memory_limit" or (kind == nil and err == "not enough memory") then
    kind = "memory_limit"
    message = MEMORY_MESSAGE
  elseif kind == "limit" then
    message = exhausted_message
  else
    kind = "runtime"
    message = error_text(err)
  end
  local source = "=" .. name
  -- A coroutine that died of a stack overflow next to a full heap leaves no room to inspect it.
  local found, line = pcall(author_line, co, source)
  line = exhausted_line or (co and found and line) or nil
  -- Messages carry "name:LINE: " in front; the line travels separately.
  local prefix_line, rest = str_match(message, "^[^\n:]*:(%d+): (.*)$")
  if prefix_line and str_sub(message, 1, #name + 1) == name .. ":" then
    line = line or tonumber(prefix_line)
    message = rest
  end
  return kind, sanitize(message), line
end

-- Guest code runs in a runner: a hooked coroutine that calls one function per resume and yields
-- DONE with its result. A runner that finished cleanly is kept for the next call, which saves
-- creating and arming a coroutine on every event; one that failed (or was left suspended by a
-- guest yield) is dropped, its stack kept for the error's line. A runner whose handler called
-- task.wait yields WAIT instead: it is parked with the task library until its timer is due.
local DONE = setmetatable({}, { __metatable = false })
local WAIT = setmetatable({}, { __metatable = false })
local co_yield = coroutine.yield
local idle_runner = nil
-- The runner whose address the host's preemption watch holds: kept alive until the host has been
-- given the next one's (see lua_runtime/preemption.py), whether or not it is still in use.
local watched_runner = nil

local function runner_loop(f, arg)
  while true do
    f, arg = co_yield(DONE, f(arg))
  end
end

-- Runs `f(arg)` as guest code of script `name`. Returns nil and f's first result, or kind,
-- message, line.
local function run_guest(name, f, arg)
  current = name
  local co = idle_runner
  idle_runner = nil
  if co == nil or co_status(co) ~= "suspended" then
    co = arm(co_create(runner_loop))
    THREADS[co] = true
    if preempt then
      preempt("runner", str_format("%p", co))
      watched_runner = co
    end
  end
  local ok, tag, result, line = co_resume(co, f, arg)
  if ok and tag ~= DONE then
    if tag == WAIT and not exhausted then
      tasks.park(co, name, result, line)
      return nil, nil
    end
    ok, tag = false, "attempt to yield from outside a coroutine"
  end
  if not ok or exhausted then
    -- A failed runner is never resumed again: the host forgets it now, so that it can be collected
    -- (this local keeps it alive for failure() to read its stack).
    if co == watched_runner then
      preempt("runner", "0")
      watched_runner = nil
    end
    return failure(co, tag, name)
  end
  idle_runner = co
  return nil, result
end

-- The task library, compiled into the VM on a script's first read of the `task` global. ----------

-- task.lua's and coroutines.lua's window on the running turn, in one function: every function of
-- this chunk costs each VM its prototype, used or not.
--   "spent"        what the turn has exhausted (nil when nothing); "clear" forgets it
--   "unwind"       ends the turn because a thread it resumed spent a budget (`kind`, at `line`)
--   "over_budget"  true (and the turn spent) once its CPU deadline has passed: checked between
--                  threads, since each coroutine starts its hook's count afresh and threads shorter
--                  than a hook period never meet the hook
--   "current", "in_turn", "budget_ms"  the running script, whether a handler or timer runs, the
--                  turn's CPU budget in ms
--   "enter"        script `kind` runs from now on
--   "begin"        a new turn within the call, with a CPU budget of `kind` seconds, and actions
--                  and output of its own: a timer's resumption
--   "output"       what the call printed, in the dispatch result's shape, or nil (for build.lua)
local function turn(op, kind, line)
  if op == "spent" then return exhausted end
  if op == "current" then return current end
  if op == "in_turn" then return in_turn end
  if op == "enter" then
    current = kind
    return nil
  end
  if op == "begin" then
    deadline = clock() + kind
    if preempt then preempt("deadline", deadline) end
    exhausted, exhausted_message, exhausted_line = nil, nil, nil
    turn_actions = n_actions
    output_bytes = 0
    return nil
  end
  if op == "clear" then
    exhausted, exhausted_line = nil, nil
    return nil
  end
  if op == "over_budget" then
    if not exhausted and clock() > deadline then exhausted = "time_limit" end
    return exhausted == "time_limit"
  end
  if op == "budget_ms" then return budget_ms end
  if op == "output" then
    if n_output == 0 then return nil end
    return { out_script = out_script, out_text = out_text }
  end
  exhausted = exhausted or kind
  exhausted_line = exhausted_line or line
  error(STOP, 0)
end

-- threads.lua: the switches between guest threads, which the task and coroutine libraries make.
-- (Arguments in a row, not a table: each field name would be one more string in every VM.)
local function load_threads()
  threads = host_module("threads")(
    turn, stop, arm, preempt, watch_thread, str_format, co_status, co_resume, SWITCH_PERIOD
  )
  return threads
end

local function load_tasks()
  tasks = host_module("task")({
    THREADS = THREADS, WAITING = WAITING, WAIT = WAIT, DONE = DONE, arm = arm, failure = failure,
    threads = threads or load_threads(),
    add_error = add_error, stop = stop, describe = describe, clock = clock, turn = turn,
    config = task_config, coroutine = raw_coroutine, getinfo = getinfo,
  })
  return tasks
end

-- `task` and `coroutine` are compiled into the VM on a script's first read of either global, and
-- the view of `os` is made on its first read: BASE then holds 32 names, the most its hash part of
-- 32 slots takes (a 33rd doubles it, 0.75 KiB of every VM).
setmetatable(BASE, {
  __index = function(_, name)
    local lib
    if name == "os" then
      lib = OS
    elseif name == "coroutine" then
      lib = host_module("coroutines")({
        THREADS = THREADS, WAITING = WAITING, arm = arm, coroutine = raw_coroutine,
        threads = threads or load_threads(),
      })
    elseif name == "task" and task_config ~= nil then
      lib = (tasks or load_tasks()).lib
    else
      return nil
    end
    lib = readonly(lib)
    BASE[name] = lib
    return lib
  end,
})

-- Loaded scripts: handlers[event] is an array of { name = script, fn = handler } in load order.
local handlers = {}

local kernel = {}

-- Loading scripts, which only a VM's build does, is in build.lua: an idle VM does not carry it.
-- Returns { compile = f, load = f, unload = f, load_output = f }; see build.lua.
function kernel.build()
  return host_module("build")({
    ENV_MT = ENV_MT, events = EVENT_LIST, handlers = handlers, begin = begin, run_guest = run_guest,
    failure = failure, describe = describe, contents = contents, turn = turn,
  })
end

local function copy_plain(t)
  local c = {}
  for k, v in next, t do c[k] = type(v) == "table" and copy_plain(v) or v end
  return c
end

-- What one call produced, or nil when it produced nothing and no timer is pending: { errors,
-- actions, out_script, out_text (arrays or nil), timers (pending count), next_due (the earliest
-- timer's due time), ran (the scripts whose timers ran) }.
local function produced(ran)
  local pending = tasks and tasks.count() or 0
  if n_errors == 0 and n_actions == 0 and n_output == 0 and pending == 0 and ran == nil then return nil end
  return { errors = n_errors > 0 and errors or nil, actions = n_actions > 0 and actions or nil,
           out_script = n_output > 0 and out_script or nil, out_text = n_output > 0 and out_text or nil,
           timers = pending > 0 and pending or nil, next_due = pending > 0 and tasks.next_due() or nil,
           ran = ran }
end

-- Runs every loaded handler for `event`, in load order, until the event's budget is spent. Returns
-- what produced() says. Every handler but the last gets a copy of `payload` and the last the
-- original, so that one script cannot rewrite what the next one sees. Threads a handler deferred
-- run right after it, in the event's budget. The handlers may request `allowance` actions in all.
function kernel.dispatch(event, payload, event_deadline, event_budget_ms, allowance)
  local list = handlers[event]
  if not list then return nil end
  begin(event_deadline, event_budget_ms)
  action_allowance = allowance
  in_turn = true
  local spent_by = nil
  for i = 1, #list do
    local entry = list[i]
    if spent_by then
      add_error(entry.name, exhausted, "not run: the event's " .. (exhausted == "time_limit" and "CPU" or "memory")
        .. " budget was used up by script " .. spent_by, nil)
    else
      local kind, message, line = run_guest(entry.name, entry.fn, i == #list and payload or copy_plain(payload))
      if kind then add_error(entry.name, kind, message, line) end
      if tasks then kind = tasks.after_turn(kind) end
      if kind == "time_limit" or kind == "memory_limit" then
        spent_by = entry.name
      elseif kind then
        exhausted, exhausted_line = nil, nil -- a quota or an error ends one script's turn; the next runs as usual
      end
    end
  end
  -- The common case, without a call: nothing produced and no task library loaded.
  if n_errors == 0 and n_actions == 0 and n_output == 0 and tasks == nil then return nil end
  return produced(nil)
end

-- The task library's settings, from the host: now() is the clock timers are due on (seconds),
-- max_pending the pending waits, delays and defers a guild may have, max_delay the longest wait
-- and min_wait the shortest, in seconds. Without this call, `task` is not available.
function kernel.configure_tasks(now, max_pending, max_delay, min_wait)
  task_config = { now = now, max_pending = max_pending, max_delay = max_delay, min_wait = min_wait }
end

-- Resumes the threads whose timers are due at `at`, in due order, each in a turn of its own with a
-- budget of `budget_s` seconds of CPU; starts no new one once the call has used `spend_s`. The
-- turns may request `allowance` actions in all. Returns what produced() says (nil when no timer
-- was due and none is pending).
function kernel.run_timers(at, budget_s, turn_budget_ms, spend_s, allowance)
  if not tasks then return nil end
  begin(0, turn_budget_ms)
  action_allowance = allowance
  in_turn = true
  return produced(tasks.run_due(at, budget_s, spend_s))
end

-- Drops the timers due at `at` without running them. Returns an array of { script, line }.
function kernel.drop_due_timers(at)
  if not tasks then return {} end
  return tasks.drop_due(at)
end

-- The pending timers: their count, and the earliest one's due time (nil when none).
function kernel.timers()
  if not tasks or tasks.count() == 0 then return 0, nil end
  return tasks.count(), tasks.next_due()
end

-- The script whose code ran last: the one to blame when the kernel itself runs out of memory.
function kernel.running()
  return current
end

-- Called by the host once a call has ended: the threads it entered may now be collected (the host
-- is told first, in threads.forget). An idle VM would otherwise keep them until its next call.
function kernel.forget()
  if threads then threads.forget() end
end


return kernel
