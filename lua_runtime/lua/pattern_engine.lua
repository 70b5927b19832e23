-- A pure-Lua port of Lua 5.4's pattern matcher (lstrlib.c): string.find, match, gmatch and gsub.
--
-- The C functions cannot be interrupted by the sandbox's count hook, and a backtracking pattern
-- can keep them busy for seconds. patterns.lua sends every call whose worst case it cannot bound
-- here instead: this is ordinary Lua code, so the hook stops it like any other guest code.
--
-- Results and error messages are the C functions' own, including when an error is raised: the
-- C matcher raises only when it reaches the faulty part of a pattern, so does this one. The
-- recursion mirrors C's `match` frame for frame, which is what lets errors be raised with a level
-- that points at the script's calling line (see `throw`). The wrappers in patterns.lua must
-- tail-call these functions for that count to hold.
--
-- The chunk returns a factory: `engine = factory(C)`, where C holds the original C functions
-- { find =, match =, gmatch =, gsub = }. They answer the character-class questions (so classes
-- follow the C library's locale exactly) and do the bounded parts of a plain search.

local byte, char, sub, format = string.byte, string.char, string.sub, string.format
local concat, unpack = table.concat, table.unpack
local type, error, select, tonumber, getmetatable, rawget = type, error, select, tonumber, getmetatable, rawget
local math_type, tointeger = math.type, math.tointeger

local MAXCAPTURES = 32 -- LUA_MAXCAPTURES
local MAXCCALLS = 200 -- depth of nested `match` calls before "pattern too complex"
-- Longest text one C call compares for the engine: short enough that a long comparison is many C
-- calls, between which the hook can stop it (and short strings, which Lua interns).
local CHUNK = 32
local CAP_UNFINISHED, CAP_POSITION = -1, -2

-- Byte values the matcher tests for.
local L_ESC, LPAREN, RPAREN, DOLLAR, DOT, LBRACKET, RBRACKET = 37, 40, 41, 36, 46, 91, 93
local CARET, STAR, PLUS, MINUS, QUESTION = 94, 42, 43, 45, 63
local ZERO, NINE = 48, 57

-- Characters that make `find` use the matcher rather than a plain search (lstrlib's SPECIALS).
local SPECIALS = "[%^%$%*%+%?%.%(%[%%%-]"

-- Argument checks, worded like lauxlib's. `level` is the error level of the script's call as seen
-- from the function raising.

-- The type a "got ..." message names: a metatable's __name, as luaL_typeerror does (C reads the
-- metatable raw; getmetatable yields to a __metatable field, which no Warden type sets).
local function type_name(v, present)
  if not present then return "no value" end
  local mt = getmetatable(v)
  local name = type(mt) == "table" and rawget(mt, "__name")
  if type(name) == "string" then return name end
  return type(v)
end

local function arg_error(arg, fname, message, level)
  error(format("bad argument #%d to '%s' (%s)", arg, fname, message), level + 1)
end

local function check_string(v, present, arg, fname)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return v .. "" end -- the concatenation converts exactly as lua_tolstring does
  arg_error(arg, fname, "string expected, got " .. type_name(v, present), 3)
end

local function opt_integer(v, arg, fname, default)
  if v == nil then return default end
  if math_type(v) == "integer" then return v end
  local number = type(v) == "string" and tonumber(v) or v
  if type(number) ~= "number" then
    arg_error(arg, fname, "number expected, got " .. type_name(v, true), 3)
  end
  local integer = tointeger(number)
  if not integer then arg_error(arg, fname, "number has no integer representation", 3) end
  return integer
end

-- lstrlib's posrelatI: a relative initial position (negative counts from the end), clipped to >= 1.
local function start_position(pos, len)
  if pos > 0 then return pos end
  if pos == 0 or pos < -len then return 1 end
  return len + pos + 1
end

-- The bytes of a string as an array; `nil` past the end plays the part of C's terminating '\0'.
local function bytes_of(s)
  local t, len = {}, #s
  for i = 1, len, 4096 do
    local last = i + 4095 < len and i + 4095 or len
    local chunk = { byte(s, i, last) }
    for j = 1, #chunk do t[i + j - 1] = chunk[j] end
  end
  return t
end

return function(C)
  local c_find, c_gmatch, c_gsub = C.find, C.gmatch, C.gsub

  -- Character classes, as the C library answers them (isalpha and friends follow the locale).
  -- CLASS_MASK[c] has one bit per class that byte c belongs to; CLASS_BIT maps a class letter to
  -- its bit, negated for the upper-case complement.
  local CLASS_MASK, CLASS_BIT = {}, {}
  do
    local all = {}
    for c = 0, 255 do
      CLASS_MASK[c] = 0
      all[c + 1] = char(c)
    end
    all = concat(all)
    local letters = "acdglpsuwxz"
    for k = 1, #letters do
      local letter = sub(letters, k, k)
      local bit = 1 << (k - 1)
      CLASS_BIT[byte(letter)] = bit
      CLASS_BIT[byte(letter) - 32] = -bit
      for position in c_gmatch(all, "()%" .. letter) do
        CLASS_MASK[position - 1] = CLASS_MASK[position - 1] | bit
      end
    end
  end

  local function match_class(c, cl)
    local bit = CLASS_BIT[cl]
    if bit == nil then return cl == c end
    if bit > 0 then return CLASS_MASK[c] & bit ~= 0 end
    return CLASS_MASK[c] & -bit == 0
  end

  -- `p` is the '[' of a set and `ec` its closing ']'.
  local function matchbracketclass(pat, c, p, ec)
    local sig = true
    if pat[p + 1] == CARET then
      sig = false
      p = p + 1
    end
    p = p + 1
    while p < ec do
      local pc = pat[p]
      if pc == L_ESC then
        p = p + 1
        if match_class(c, pat[p]) then return sig end
      elseif pat[p + 1] == MINUS and p + 2 < ec then
        if pc <= c and c <= pat[p + 2] then return sig end
        p = p + 2
      elseif pc == c then
        return sig
      end
      p = p + 1
    end
    return not sig
  end

  -- The state of one match of `pattern` against `src`: C's MatchState, kept in upvalues shared
  -- by the matcher's closures. `up` is the level of the script's frame as seen from the function
  -- that calls `match` (the entry function, or gmatch's iterator). Returns a table of closures.
  local function new_matcher(src, pattern, up)
    local pat, p_end, src_end = bytes_of(pattern), #pattern + 1, #src + 1
    local level, matchdepth = 0, MAXCCALLS -- captures so far; `match` frames still allowed
    local cinit, clen = {}, {} -- start index and length (or CAP_*) of each capture
    local ends = {} -- classend by pattern index, once computed without error

    -- Raises `message` at the script's call. The level counts this function, `extra` frames
    -- between it and the innermost active `match` (a helper, or a `match` that has not yet
    -- counted itself), the active `match` frames, and `up`.
    local function throw(message, extra)
      error(message, 1 + extra + (MAXCCALLS - matchdepth) + up)
    end

    -- Index just past the single-character class starting at `p` (lstrlib's classend).
    local function classend(p)
      local ep = ends[p]
      if ep then return ep end
      local q = p + 1
      local pc = pat[p]
      if pc == L_ESC then
        if q == p_end then throw("malformed pattern (ends with '%')", 1) end
        q = q + 1
      elseif pc == LBRACKET then
        if pat[q] == CARET then q = q + 1 end
        repeat -- look for a ']'
          if q == p_end then throw("malformed pattern (missing ']')", 1) end
          local c = pat[q]
          q = q + 1
          if c == L_ESC and q < p_end then q = q + 1 end -- skip escapes such as '%]'
        until pat[q] == RBRACKET
        q = q + 1
      end
      ends[p] = q
      return q
    end

    local function singlematch(s, p, ep)
      if s >= src_end then return false end
      local pc = pat[p]
      if pc == DOT then return true end
      local c = byte(src, s)
      if pc == L_ESC then return match_class(c, pat[p + 1]) end
      if pc == LBRACKET then return matchbracketclass(pat, c, p, ep - 1) end
      return pc == c
    end

    -- How many characters from `s` on the item p..ep-1 matches in a row.
    local function expansion(s, p, ep)
      local pc = pat[p]
      if pc == DOT then return src_end - s end
      local i = s
      if pc == L_ESC then
        local cl = pat[p + 1]
        while i < src_end and match_class(byte(src, i), cl) do
          i = i + 1
        end
      elseif pc == LBRACKET then
        while i < src_end and matchbracketclass(pat, byte(src, i), p, ep - 1) do
          i = i + 1
        end
      else
        while byte(src, i) == pc do -- nil past the end
          i = i + 1
        end
      end
      return i - s
    end

    -- `p` points at the two delimiters after "%b".
    local function matchbalance(s, p)
      if p >= p_end - 1 then throw("malformed pattern (missing arguments to '%b')", 1) end
      if s >= src_end or byte(src, s) ~= pat[p] then return nil end
      local open, close, depth = pat[p], pat[p + 1], 1
      for i = s + 1, src_end - 1 do
        local c = byte(src, i)
        if c == close then
          depth = depth - 1
          if depth == 0 then return i + 1 end
        elseif c == open then
          depth = depth + 1
        end
      end
      return nil -- the subject ends out of balance
    end

    -- Back-reference "%<digit>" at `s`; `d` is the digit's byte.
    local function match_capture(s, d)
      local l = d - ZERO -- capture number; "%0" gives 0, an invalid index as in C
      if l < 1 or l > level or clen[l] == CAP_UNFINISHED then
        throw(format("invalid capture index %%%d", l), 1)
      end
      local len = clen[l]
      -- A position capture has no text: C compares its negative length as a huge size and fails.
      if len < 0 or src_end - s < len then return nil end
      local init = cinit[l]
      for k = 0, len - 1, CHUNK do -- memcmp, a piece at a time
        local last = k + CHUNK <= len and k + CHUNK - 1 or len - 1
        if sub(src, init + k, init + last) ~= sub(src, s + k, s + last) then return nil end
      end
      return s + len
    end

    -- Matches pattern index `p` onward against subject index `s`; returns the end of the match
    -- (the index after its last character) or nil. Start/end capture, max_expand and min_expand
    -- are inlined, so that every recursion is one `match` frame, as in C.
    local function match(s, p)
      if matchdepth == 0 then throw("pattern too complex", 1) end
      matchdepth = matchdepth - 1
      while p ~= p_end do -- each pass handles one pattern item; C's `goto init`
        local pc = pat[p]
        if pc == LPAREN then -- start capture
          local what = CAP_UNFINISHED
          if pat[p + 1] == RPAREN then -- position capture
            what, p = CAP_POSITION, p + 2
          else
            p = p + 1
          end
          if level >= MAXCAPTURES then throw("too many captures", 0) end
          level = level + 1
          cinit[level], clen[level] = s, what
          s = match(s, p)
          if s == nil then level = level - 1 end -- undo the capture
          break
        elseif pc == RPAREN then -- end capture
          local l = level -- capture_to_close: the latest unfinished capture
          while l > 0 and clen[l] ~= CAP_UNFINISHED do
            l = l - 1
          end
          if l == 0 then throw("invalid pattern capture", 0) end
          clen[l] = s - cinit[l]
          s = match(s, p + 1)
          if s == nil then clen[l] = CAP_UNFINISHED end -- undo the capture
          break
        elseif pc == DOLLAR and p + 1 == p_end then -- '$' ends the pattern: anchor at the end
          if s ~= src_end then s = nil end
          break
        end
        local next_pc = pat[p + 1]
        if pc == L_ESC and next_pc == 98 then -- "%b": balanced string
          s = matchbalance(s, p + 2)
          if s == nil then break end
          p = p + 4
        elseif pc == L_ESC and next_pc == 102 then -- "%f": frontier
          p = p + 2
          if pat[p] ~= LBRACKET then throw("missing '[' after '%f' in pattern", 0) end
          local ep = classend(p)
          local previous = s == 1 and 0 or byte(src, s - 1)
          local current = s < src_end and byte(src, s) or 0
          if matchbracketclass(pat, previous, p, ep - 1) or not matchbracketclass(pat, current, p, ep - 1) then
            s = nil
            break
          end
          p = ep
        elseif pc == L_ESC and next_pc and next_pc >= ZERO and next_pc <= NINE then -- back-reference
          s = match_capture(s, next_pc)
          if s == nil then break end
          p = p + 2
        else -- a single-character class with an optional suffix
          local ep = ends[p] or classend(p)
          local suffix = pat[ep]
          local matched = false -- singlematch(s, p, ep), inlined: this is the hottest test
          if s < src_end then
            if pc == DOT then
              matched = true
            elseif pc == L_ESC then
              matched = match_class(byte(src, s), next_pc)
            elseif pc == LBRACKET then
              matched = matchbracketclass(pat, byte(src, s), p, ep - 1)
            else
              matched = pc == byte(src, s)
            end
          end
          if not matched then
            if suffix ~= STAR and suffix ~= QUESTION and suffix ~= MINUS then -- '+' or no suffix
              s = nil
              break
            end
            p = ep + 1 -- accept the empty match
          elseif suffix == QUESTION then
            local res = match(s + 1, ep + 1)
            if res ~= nil then
              s = res
              break
            end
            p = ep + 1
          elseif suffix == STAR or suffix == PLUS then -- max_expand
            if suffix == PLUS then s = s + 1 end -- one repetition is already matched
            local res = nil
            for i = s + expansion(s, p, ep), s, -1 do -- the longest expansion first
              res = match(i, ep + 1)
              if res ~= nil then break end
            end
            s = res
            break
          elseif suffix == MINUS then -- min_expand
            local res
            while true do -- the shortest expansion first
              res = match(s, ep + 1)
              if res ~= nil or not singlematch(s, p, ep) then break end
              s = s + 1
            end
            s = res
            break
          else
            s, p = s + 1, ep
          end
        end
      end
      matchdepth = matchdepth + 1
      return s
    end

    -- `match` must be called by the entry function itself, for `up` to be right.
    local matcher = { match = match, src_end = src_end }

    -- Prepares a new attempt (C's reprepstate). Resetting the depth too matters only after an
    -- error a script caught inside gmatch's loop: C would carry on from the depth it had reached.
    function matcher.reset()
      level, matchdepth = 0, MAXCCALLS
    end

    -- Capture `i` (0-based, as in C) of the match s..e-1: a string or a position. `lvl` is the
    -- error level of the script's call as seen from here.
    function matcher.capture(i, s, e, lvl)
      if i >= level then
        if i ~= 0 then error(format("invalid capture index %%%d", i + 1), lvl) end
        return sub(src, s, e - 1)
      end
      local len = clen[i + 1]
      if len == CAP_UNFINISHED then error("unfinished capture", lvl) end
      local init = cinit[i + 1]
      if len == CAP_POSITION then return init end
      return sub(src, init, init + len - 1)
    end

    -- The captures of a match as an array and their count; the whole match when there are none,
    -- unless `s` is nil (find reports positions instead).
    function matcher.captures(s, e, lvl)
      local n = (level == 0 and s) and 1 or level
      local values = {}
      for i = 1, n do
        values[i] = matcher.capture(i - 1, s, e, lvl + 1)
      end
      return values, n
    end

    return matcher
  end

  -- Plain search for `p` in `s` from index `init`. The hook runs only between C calls, so each C
  -- call here does a small, bounded piece of the work: a C plain search for the first byte finds
  -- each candidate, and anchored literal patterns of at most CHUNK bytes check it.
  local function plain_find(s, p, init)
    local ls, lp = #s, #p
    if lp == 0 then return init, init - 1 end
    local first, pieces = sub(p, 1, 1), {}
    for k = 1, lp, CHUNK do
      pieces[#pieces + 1] = "^" .. c_gsub(sub(p, k, k + CHUNK - 1), "[^%w]", "%%%0")
    end
    local last_start = ls - lp + 1
    local i = init
    while i <= last_start do
      i = c_find(s, first, i, true)
      if i == nil or i > last_start then return nil end
      local k = 1
      while pieces[k] and c_find(s, pieces[k], i + (k - 1) * CHUNK) do
        k = k + 1
      end
      if not pieces[k] then return i, i + lp - 1 end
      i = i + 1
    end
    return nil
  end

  -- lstrlib's str_find_aux: `find` reports positions, `match` the captures.
  local function find_aux(is_find, fname, nargs, s, p, init, plain)
    s = check_string(s, nargs >= 1, 1, fname)
    p = check_string(p, nargs >= 2, 2, fname)
    local ls = #s
    init = start_position(opt_integer(init, 3, fname, 1), ls)
    if init > ls + 1 then return nil end -- starts after the subject's end: cannot find anything
    if is_find and (plain or not c_find(p, SPECIALS)) then
      local first, last = plain_find(s, p, init)
      if first then return first, last end
      return nil
    end
    local anchor = byte(p, 1) == CARET
    local m = new_matcher(s, p, 2)
    local pstart = anchor and 2 or 1
    local s1 = init
    repeat
      m.reset()
      local e = m.match(s1, pstart)
      if e ~= nil then
        if is_find then
          local values, n = m.captures(nil, 0, 3)
          return s1, e - 1, unpack(values, 1, n)
        end
        local values, n = m.captures(s1, e, 3)
        return unpack(values, 1, n)
      end
      s1 = s1 + 1
    until s1 > m.src_end or anchor
    return nil
  end

  local engine = {}

  function engine.find(...)
    local s, p, init, plain = ...
    return find_aux(true, "find", select("#", ...), s, p, init, plain)
  end

  function engine.match(...)
    local s, p, init = ...
    return find_aux(false, "match", select("#", ...), s, p, init)
  end

  function engine.gmatch(...)
    local s, p, init = ...
    local nargs = select("#", ...)
    s = check_string(s, nargs >= 1, 1, "gmatch")
    p = check_string(p, nargs >= 2, 2, "gmatch")
    local ls = #s
    init = start_position(opt_integer(init, 3, "gmatch", 1), ls)
    if init > ls + 1 then init = ls + 2 end -- past the end: the iterator finds nothing
    -- The iterator is called by the script's `for`, so the script is one level above it.
    local m = new_matcher(s, p, 2)
    local src, lastmatch = init, nil
    return function()
      for start = src, m.src_end do
        m.reset()
        local e = m.match(start, 1)
        -- An empty match right where the previous match ended does not count (5.4's rule).
        if e ~= nil and e ~= lastmatch then
          src, lastmatch = e, e
          local values, n = m.captures(start, e, 3)
          return unpack(values, 1, n)
        end
      end
    end
  end

  -- lstrlib's add_s: the replacement string with its "%" escapes expanded.
  local function add_s(m, src, out, n, repl, s, e)
    local from = 1
    while true do
      local at = c_find(repl, "%", from, true)
      if at == nil then break end
      n = n + 1
      out[n] = sub(repl, from, at - 1)
      local d = byte(repl, at + 1)
      if d == L_ESC then
        n = n + 1
        out[n] = "%"
      elseif d == ZERO then
        n = n + 1
        out[n] = sub(src, s, e - 1)
      elseif d and d > ZERO and d <= NINE then
        n = n + 1
        out[n] = m.capture(d - ZERO - 1, s, e, 5) .. ""
      else
        error("invalid use of '%' in replacement string", 4)
      end
      from = at + 2
    end
    n = n + 1
    out[n] = sub(repl, from)
    return n
  end

  -- lstrlib's add_value. Returns the new count of pieces in `out` and whether the text changed.
  local function add_value(m, src, out, n, repl, tr, s, e)
    local value
    if tr == "function" then
      local values, count = m.captures(s, e, 4)
      value = repl(unpack(values, 1, count))
    elseif tr == "table" then
      value = repl[m.capture(0, s, e, 4)]
    else -- a string or a number
      return add_s(m, src, out, n, repl .. "", s, e), true
    end
    if not value then -- nil or false keeps the original text
      n = n + 1
      out[n] = sub(src, s, e - 1)
      return n, false
    end
    local tv = type(value)
    if tv ~= "string" and tv ~= "number" then
      error(format("invalid replacement value (a %s)", tv), 3)
    end
    n = n + 1
    out[n] = value .. ""
    return n, true
  end

  function engine.gsub(...)
    local s, p, repl, max_n = ...
    local nargs = select("#", ...)
    s = check_string(s, nargs >= 1, 1, "gsub")
    p = check_string(p, nargs >= 2, 2, "gsub")
    local tr = type(repl)
    local ls = #s
    max_n = opt_integer(max_n, 4, "gsub", ls + 1)
    if tr ~= "number" and tr ~= "string" and tr ~= "function" and tr ~= "table" then
      arg_error(3, "gsub", "string/function/table expected, got " .. type_name(repl, nargs >= 3), 2)
    end
    local anchor = byte(p, 1) == CARET
    local m = new_matcher(s, p, 2)
    local pstart = anchor and 2 or 1
    local out, pieces = {}, 0
    local src, copied, lastmatch, count, changed = 1, 1, nil, 0, false
    while count < max_n do
      m.reset()
      local e = m.match(src, pstart)
      if e ~= nil and e ~= lastmatch then
        count = count + 1
        if copied < src then
          pieces = pieces + 1
          out[pieces] = sub(s, copied, src - 1)
        end
        local replaced
        pieces, replaced = add_value(m, s, out, pieces, repl, tr, src, e)
        changed = changed or replaced
        src, lastmatch, copied = e, e, e
      elseif src < m.src_end then -- otherwise keep one character and move on
        src = src + 1
      else
        break -- end of the subject
      end
      if anchor then break end
    end
    if not changed then return s, count end
    pieces = pieces + 1
    out[pieces] = sub(s, copied)
    return concat(out, "", 1, pieces), count
  end

  return engine
end
