-- string.find, match, gmatch and gsub for guest code, bounded so that no call can stall a worker.
--
-- The sandbox's count hook never interrupts a C function, and Lua's backtracking matcher can
-- spend seconds inside one call: string.rep("a", 30000):find(string.rep("a*", 8) .. "b"). The
-- subject is often a member's message, so a hostile member could make an admin's innocent pattern
-- explode. Each wrapper therefore bounds the C matcher's worst case for this pattern on a subject
-- of this length; when the bound is within PATTERN_BUDGET the call goes to C, otherwise to
-- pattern_engine.lua, a Lua port of the same matcher that the hook can stop. Either way the
-- results and error messages are the C functions' own. A C function raising from here would put
-- this file's position on its message, so the C path also takes only calls C cannot reject: the
-- wrappers check the argument types, and the analysis refuses any pattern C could raise on
-- (except gsub's replacement errors, which are raised again at the script's line). One
-- difference no Lua function can avoid: a script that tail-calls a wrapper (`return s:find(p)`)
-- loses its own frame, so an error from the engine then names the line that called the script's
-- function, where C names the return statement.
--
-- The chunk returns a factory, called once per guild VM by the kernel:
--   safe = factory(C, load_engine)
-- C holds the original C functions { find =, match =, gmatch =, gsub = }; load_engine() returns
-- pattern_engine.lua's factory, compiled on the first call that needs it. `safe` holds the four
-- wrappers and nothing else: the kernel copies every field into the string library. (Tests see
-- which way a call went by passing counting stand-ins for C and load_engine.)

local byte = string.byte
local type, math_type, next, pcall, error, select = type, math.type, next, pcall, error, select

-- Work, in matcher steps, that one C call may do. A step is one character test or one call of
-- C's `match`; worst_case counts them. Measured on the development machine (bench/patterns.py
-- prints the figures), the C matcher spends at most about 2 ns per counted step on the slowest
-- adversarial shapes (quadratic trims, `%a+%d` scans), so 2^19 steps is about 1 ms: well under
-- the ~5 ms a worker may spend in one C call, with room for a slower or busier machine.
local PATTERN_BUDGET = 2 ^ 19
-- Steps of overhead for each start position the C loops try (the call, the state reset).
local ATTEMPT = 4
-- A C plain search (memchr, then memcmp at each candidate) costs about 5 ns per candidate and
-- 1/64 of that per compared byte: at most n * (256 + m) / 64 steps for m bytes in n.
local PLAIN_BUDGET = PATTERN_BUDGET * 64
-- Above this length a subject is treated as unbounded: no Lua string in a guild VM gets near it.
local MAX_LENGTH = 2 ^ 31
local MAXCCALLS = 200 -- C's limit on nested `match` calls ("pattern too complex")
-- Subjects longer than this cost enough in any C call that the CPU budget is checked first.
local LONG_SUBJECT = 65536
-- '%' escapes C's gsub may expand in one call, counted over all its matches. An escape can add
-- nothing to the result (an empty capture: "%1" with "(x*)"), so the heap does not bound them:
-- ten thousand matches of a replacement of a million escapes ran for minutes. About 10 ns each.
local ESCAPE_BUDGET = 2 ^ 17
-- Patterns whose safe length is kept; a full cache is emptied. Longer patterns are analysed on
-- every call rather than kept alive here: the analysis is a few dozen passes over the pattern's
-- items, plain Lua that the hook counts like the script's own code.
local CACHE_ENTRIES = 64
local MAX_CACHED_PATTERN = 256

-- Kinds of pattern items. Single-character classes use their suffix byte instead: SINGLE (none),
-- or the byte of '*', '+', '-' or '?'.
local SINGLE, CAPTURE, END_ANCHOR, FRONTIER, LINEAR = 0, 1, 2, 3, 4
local STAR, PLUS, MINUS, QUESTION = 42, 43, 45, 63

-- Index just after the single-character class at `i`, or nil when it is malformed (C raises an
-- error if it ever reaches it).
local function class_end(p, i, len)
  local c = byte(p, i)
  i = i + 1
  if c == 37 then -- '%'
    return i <= len and i + 1 or nil
  elseif c == 91 then -- '['
    if byte(p, i) == 94 then i = i + 1 end
    repeat
      if i > len then return nil end
      local cc = byte(p, i)
      i = i + 1
      if cc == 37 and i <= len then i = i + 1 end
    until byte(p, i) == 93
    return i + 1
  end
  return i
end

-- Splits a pattern (from index `i`) into items, the way C's `match` walks it. Returns the kinds,
-- the cost of one character test per item (a set is scanned element by element) and which items
-- are '.'; or nil when C could raise an error somewhere in the pattern: those calls go to the
-- engine, which raises the same error at the same point.
local function parse(p, i)
  local len = #p
  local kinds, weights, anychar = {}, {}, {}
  local items, captures, nested = 0, 0, 0
  local open, closed = {}, {}
  while i <= len do
    local c, d = byte(p, i), byte(p, i + 1)
    local kind, weight = SINGLE, 1
    if c == 40 then -- '(' opens a capture; "()" is a finished position capture
      if captures == 32 then return nil end -- LUA_MAXCAPTURES
      captures = captures + 1
      if d == 41 then
        closed[captures], i = true, i + 2
      else
        open[#open + 1], i = captures, i + 1
      end
      kind, nested = CAPTURE, nested + 1
    elseif c == 41 then -- ')' closes the latest open capture
      if #open == 0 then return nil end
      closed[open[#open]], open[#open] = true, nil
      kind, nested, i = CAPTURE, nested + 1, i + 1
    elseif c == 36 and i == len then -- '$' at the end anchors there
      kind, i = END_ANCHOR, i + 1
    elseif c == 37 and d == 98 then -- "%bxy"
      if i + 3 > len then return nil end
      kind, i = LINEAR, i + 4
    elseif c == 37 and d == 102 then -- "%f[set]"
      i = byte(p, i + 2) == 91 and class_end(p, i + 2, len)
      if not i then return nil end
      kind = FRONTIER
    elseif c == 37 and d and d >= 48 and d <= 57 then -- back-reference to a finished capture
      if not closed[d - 48] then return nil end
      kind, i = LINEAR, i + 2
    else
      local e = class_end(p, i, len)
      if not e then return nil end
      if c == 91 then weight = 1 + (e - i) // 4 end
      local suffix = byte(p, e)
      if suffix == STAR or suffix == PLUS or suffix == MINUS or suffix == QUESTION then
        kind, nested, e = suffix, nested + 1, e + 1
      end
      anychar[items + 1], i = c == 46, e
    end
    items = items + 1
    kinds[items], weights[items] = kind, weight
  end
  -- Each nesting item adds at most one `match` frame, so this bounds C's recursion depth.
  if #open > 0 or nested >= MAXCCALLS then return nil end
  return kinds, weights, anychar
end

-- Upper bound on the C matcher's steps for gsub or gmatch over a subject of length n (find and
-- match try fewer start positions, so it bounds them too). Walking the items from the last, it
-- keeps for the rest of the pattern: `fail`, the most a failing attempt costs; `base` and
-- `per_char`, such that a successful attempt consuming k characters costs at most
-- base + per_char * k; `never_fails` (from any position); `empty_at_end` (matches at the end of
-- the subject). A repetition multiplies the cost of the rest only by the attempts that fail, so
-- `%d+`, `(%S+)` or `.-$` stay linear while `a*a*b` is cubic.
local function worst_case(kinds, weights, anychar, n, anchored)
  n = n + 0.0 -- floats: the bound may exceed the integers
  local fail, base, per_char, never_fails, empty_at_end = 0.0, 1.0, 0.0, true, true
  for k = #kinds, 1, -1 do
    local kind, w = kinds[k], weights[k]
    if kind == CAPTURE then
      fail, base = fail + 1, base + 1
    elseif kind == END_ANCHOR then
      fail, base, per_char, never_fails = 1, 1, 0, false
    elseif kind == FRONTIER then
      fail, base, never_fails, empty_at_end = fail + 1, base + 1, false, false
    elseif kind == LINEAR then -- "%b" or a back-reference: scans up to the rest of the subject
      fail, base, per_char = fail + n, base + 1, per_char > 1 and per_char or 1
      never_fails, empty_at_end = false, false
    elseif kind == SINGLE then
      fail, base, never_fails, empty_at_end = fail + w, base + w, false, false
    elseif kind == QUESTION then
      fail, base = w + 2 * fail, w + fail + base
    elseif kind == STAR or kind == PLUS then
      -- The longest expansion is tried first; it succeeds at once when the rest cannot fail,
      -- or when '.' runs to the end and the rest matches there.
      if never_fails or (anychar[k] and empty_at_end) then
        base, per_char = base + w + 1, per_char > w and per_char or w
        fail, never_fails = kind == PLUS and w or 0, kind == STAR
      else
        base = w * (n + 1) + n * fail + base
        fail, never_fails = (n + 1) * (w + fail), false
      end
      empty_at_end = kind == STAR and empty_at_end
    elseif kind == MINUS then -- the shortest expansion is tried first
      base = base + 1
      if not never_fails then
        per_char = per_char > fail + w and per_char or fail + w
        fail, never_fails = (n + 1) * (fail + w), anychar[k] and empty_at_end
      end
    end
    if never_fails then fail = 0 end
  end
  if anchored then return ATTEMPT + (fail > base + per_char * n and fail or base + per_char * n) end
  -- Each position is tried at most twice (once more after an empty match), and the characters
  -- that successful matches consume add up to at most n.
  return (2 * n + 2) * (ATTEMPT + (fail > base and fail or base)) + per_char * n
end

-- The longest subject on which the C functions stay within PATTERN_BUDGET for pattern p, or -1
-- if p must never run in C.
local function safe_length(p)
  local anchored = byte(p, 1) == 94
  local kinds, weights, anychar = parse(p, anchored and 2 or 1)
  if not kinds then return -1 end
  local fits, too_long = -1, MAX_LENGTH -- the bound grows with n: bisect
  if worst_case(kinds, weights, anychar, too_long, anchored) <= PATTERN_BUDGET then return MAX_LENGTH end
  while too_long - fits > 1 do
    local mid = (fits + too_long) // 2
    if worst_case(kinds, weights, anychar, mid, anchored) <= PATTERN_BUDGET then
      fits = mid
    else
      too_long = mid
    end
  end
  return fits
end

-- nil, or a number C takes as an integer. Luau numbers are all floats (a literal 1 is 1.0), and
-- C accepts any float with an exact integer value.
local function whole(n)
  return n == nil or math_type(n) == "integer" or (math_type(n) == "float" and n == n // 1 and n > -2 ^ 53 and n < 2 ^ 53)
end

return function(C, load_engine)
  local c_find, c_match, c_gmatch, c_gsub = C.find, C.match, C.gmatch, C.gsub
  -- C.charge() checks the event's CPU budget. The hook only checks it every few thousand
  -- instructions, and a loop of C calls near their bound would otherwise run far past it.
  local charge = C.charge or function() end
  local engine = nil

  local function get_engine()
    engine = load_engine()(C)
    return engine
  end

  -- Pattern -> safe subject length. Only strings are ever keys, so a hit also proves `p` is one.
  local limits, cached = {}, 0

  -- A C call on a long subject, or near the pattern's bound, costs enough to check the budget first.
  local function costly(n, limit)
    if n > LONG_SUBJECT or n * 4 > limit then charge() end
    return true
  end

  local function limit_of(p)
    local limit = limits[p]
    if limit then return limit end
    if type(p) ~= "string" then return -1 end -- a number or an error: the engine converts or raises
    limit = safe_length(p)
    if #p <= MAX_CACHED_PATTERN then
      if cached == CACHE_ENTRIES then
        for key in next, limits do limits[key] = nil end
        cached = 0
      end
      limits[p], cached = limit, cached + 1
    end
    return limit
  end

  -- C's gsub raises "invalid replacement value" from inside itself, with the position of its
  -- caller, this file. The replacement closures below check the value instead and raise at the
  -- script's line: level 5 counts this function, the closure, C's gsub, the gsub wrapper, then
  -- the script.
  local function invalid(value)
    error("invalid replacement value (a " .. type(value) .. ")", 5)
  end

  -- Every wrapper ends in a tail call of the engine, so that the engine's errors count the
  -- script's frame at the level C would.
  local safe = {}

  function safe.find(...)
    local s, p, init, plain = ...
    if type(s) == "string" and whole(init) then
      if plain then
        if type(p) == "string" and #s * (256 + #p) <= PLAIN_BUDGET and costly(#s, PLAIN_BUDGET) then
          return c_find(s, p, init, plain)
        end
      else
        local limit = limits[p] or limit_of(p)
        if #s <= limit and costly(#s, limit) then return c_find(s, p, init) end
      end
    end
    return (engine or get_engine()).find(...)
  end

  function safe.match(...)
    local s, p, init = ...
    if type(s) == "string" and whole(init) then
      local limit = limits[p] or limit_of(p)
      if #s <= limit and costly(#s, limit) then return c_match(s, p, init) end
    end
    return (engine or get_engine()).match(...)
  end

  -- C's gmatch iterator, for a subject costly enough to check the budget on. Once the iterator has
  -- found nothing, C would search the rest of the subject again on every further call (a script
  -- may keep calling it): it answers nothing at once from then on, as C would after its search.
  local function exhaustible(iterator)
    local done = false
    local function after(...)
      if select("#", ...) == 0 then done = true end
      return ...
    end
    return function()
      if done then return end
      return after(iterator())
    end
  end

  -- gmatch reads a leading '^' as a plain character, unlike the analysis: such (odd) patterns
  -- always take the engine.
  function safe.gmatch(...)
    local s, p, init = ...
    if type(s) == "string" and whole(init) and byte(p, 1) ~= 94 then
      local limit = limits[p] or limit_of(p)
      if #s <= limit then
        if #s > LONG_SUBJECT or #s * 4 > limit then
          charge()
          return exhaustible(c_gmatch(s, p, init))
        end
        return c_gmatch(s, p, init)
      end
    end
    return (engine or get_engine()).gmatch(...)
  end

  -- Whether C's gsub may expand string replacement `repl` at each of up to `matches` matches: at
  -- most ESCAPE_BUDGET escapes in all.
  local function escapes_fit(repl, matches)
    local at = c_find(repl, "%", 1, true)
    if not at then return true end
    local allowed, escapes = ESCAPE_BUDGET // matches, 0
    while at do
      escapes = escapes + 1
      if escapes > allowed then return false end
      at = c_find(repl, "%", at + 2, true)
    end
    return true
  end

  -- The most matches gsub makes on a subject of length n: one per position and one at the end.
  local function matches_of(n, max_n)
    if max_n ~= nil and max_n < n + 1 then return max_n < 1 and 1 or max_n end
    return n + 1
  end

  function safe.gsub(...)
    local s, p, repl, max_n = ...
    local limit = type(s) == "string" and whole(max_n) and (limits[p] or limit_of(p))
    if limit and #s <= limit and costly(#s, limit) then
      local tr = type(repl)
      local matches = byte(p, 1) == 94 and 1 or matches_of(#s, max_n)
      if tr == "number" or (tr == "string" and escapes_fit(repl, matches)) then
        -- A bad '%' escape makes C raise from inside, with no position when called through
        -- pcall: raise it again at the script's line. "not enough memory" must stay as it is.
        local ok, result, count = pcall(c_gsub, s, p, repl, max_n)
        if ok then return result, count end
        error(result, result == "not enough memory" and 0 or 2)
      elseif tr == "table" then
        return c_gsub(s, p, function(key)
          local value = repl[key]
          local tv = value and type(value)
          if tv and tv ~= "string" and tv ~= "number" then invalid(value) end
          return value
        end, max_n)
      elseif tr == "function" then
        return c_gsub(s, p, function(...)
          local value = repl(...)
          local tv = value and type(value)
          if tv and tv ~= "string" and tv ~= "number" then invalid(value) end
          return value
        end, max_n)
      end
    end
    return (engine or get_engine()).gsub(...)
  end

  return safe
end
