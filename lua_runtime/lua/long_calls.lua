-- The long cases of c_calls.lua's functions: their work split into C calls of bounded size, with
-- the budget checked before each. Compiled into a guild VM by c_calls.lua on the first long call
-- (most scripts never make one), and called by its wrappers with arguments they have checked:
-- integers where C takes integers, and ranges long enough to be worth slicing.
--
-- The chunk returns a factory: long = factory(k), with k = { charge, finish, metatable, find,
-- match, date, time } as c_calls.lua has them, and its sizes (PLAIN_SLICE, META_SLICE, BLOCK,
-- SORT_BUDGET, SHORT_STRING, DATE_SEGMENT), so that the two agree. The factory runs while the
-- libraries hold their own functions, and takes them from there. The wrappers tail-call these
-- functions: level 2 is the script's line.

local type, error, pcall, rawequal, log = type, error, pcall, rawequal, math.log
local maxinteger = math.maxinteger

-- Strings longer than this are compared a slice at a time, and the budget is checked each time
-- the comparisons of a sort have gone through this many bytes.
local LONG_STRING <const> = 65536
local COMPARED_PER_CHECK <const> = 65536

return function(k)
  local charge, finish, raw_metatable = k.charge, k.finish, k.metatable
  local PLAIN_SLICE, META_SLICE = k.PLAIN_SLICE, k.META_SLICE
  local c_rep, c_sub, c_byte, c_find, c_match = string.rep, string.sub, string.byte, k.find, k.match
  local c_move, c_sort, c_concat, c_unpack = table.move, table.sort, table.concat, table.unpack
  local c_date, c_time = k.date, k.time
  local long = {}

  -- count - 1 copies of s..sep, then s: the copies as q blocks of `per` units, and r more, so that C
  -- copies at least BLOCK bytes at a time.
  function long.rep(s, count, sep)
    local unit = sep and s .. sep or s
    local per = k.BLOCK // #unit
    local q, r = (count - 1) // per, (count - 1) % per
    return c_rep(c_rep(unit, per), q) .. c_rep(unit, r) .. s
  end

  -- C's table.move of a1[f..e] to (a2 or a1)[t..] (integers, e >= f), as slices of `slice`
  -- elements. Overlapping ranges of one table go from the top down, as C does, so that every
  -- element is read before it is overwritten; within a slice C keeps its own order, and reads and
  -- writes every element as one call would (metamethods included). Returns nil, or the error.
  local function move_in_slices(a1, f, e, t, a2, slice, label)
    if not (f > 0 or e < maxinteger + f) then
      return "bad argument #3 to '" .. label .. "' (too many elements to move)"
    end
    if t > maxinteger - (e - f) then return "bad argument #4 to '" .. label .. "' (destination wrap around)" end
    local upward = not (t > e or t <= f or (a2 ~= nil and a1 ~= a2))
    local lo, hi = f, e
    while lo <= hi do
      local from, to -- this slice
      if upward then
        from, to = hi - lo >= slice and hi - slice + 1 or lo, hi
        hi = from - 1
      else
        from, to = lo, hi - lo >= slice and lo + slice - 1 or hi
        lo = to + 1
      end
      charge()
      local ok, message = pcall(c_move, a1, from, to, t + (from - f), a2)
      if not ok then return message end
    end
  end

  function long.move(a1, f, e, t, a2, slice)
    local failed = move_in_slices(a1, f, e, t, a2, slice, "move")
    if failed then return finish("move", false, failed) end
    if a2 == nil then return a1 end
    return a2
  end

  function long.insert(t, n, pos, value, slice)
    local failed = move_in_slices(t, pos, n, pos + 1, nil, slice, "insert")
    if failed then return finish("insert", false, failed) end
    t[pos] = value
  end

  function long.remove(t, n, pos, slice)
    local value = t[pos]
    local failed = move_in_slices(t, pos + 1, n, pos, nil, slice, "remove")
    if failed then return finish("remove", false, failed) end
    t[n] = nil
    return value
  end

  -- Each slice through the Luau library's concat (numbers written the Luau way), then the pieces.
  function long.concat(t, sep, first, last, slice)
    local pieces, n, lo = {}, 0, first
    while lo <= last do
      local hi = last - lo >= slice and lo + slice - 1 or last
      charge()
      local ok, piece = pcall(c_concat, t, sep, lo, hi)
      if not ok then return finish("concat", false, piece) end
      n = n + 1
      pieces[n] = piece
      lo = hi + 1
    end
    return c_concat(pieces, sep)
  end

  -- C reads every element through __index: they are copied in slices into a plain table first.
  function long.unpack(t, first, last)
    local copy = {}
    local failed = move_in_slices(t, first, last, 1, copy, META_SLICE, "unpack")
    if failed then return finish("unpack", false, failed) end
    return c_unpack(copy, 1, last - first + 1)
  end

  -- Sorting ---------------------------------------------------------------------------------------

  -- x < y, for strings of any length. Two long strings are compared a slice at a time, so that no
  -- single comparison (strcoll, once per NUL byte) outruns the budget. Slice by slice, `<` gives
  -- the order of the whole strings: the collation is C's (Python never sets LC_COLLATE), where
  -- strcoll compares bytes.
  local function less_than(x, y)
    if type(x) == "string" and type(y) == "string" and #x > LONG_STRING and #y > LONG_STRING then
      if x == y then return false end -- a memcmp: 16 MB in about a millisecond
      local at = 1
      while true do
        local a, b = c_sub(x, at, at + LONG_STRING - 1), c_sub(y, at, at + LONG_STRING - 1)
        if a ~= b then return a < b end
        charge()
        at = at + LONG_STRING
      end
    end
    return x < y
  end

  -- `compare` (the script's comparator, or less_than), checking the budget whenever the strings it
  -- was given add up to COMPARED_PER_CHECK bytes: comparing strings costs up to their length, out
  -- of the hook's sight.
  local function charging(compare)
    local compared = 0
    return function(x, y)
      if type(x) == "string" and type(y) == "string" then
        compared = compared + (#x < #y and #x or #y)
        if compared > COMPARED_PER_CHECK then
          compared = 0
          charge()
        end
      end
      return compare(x, y)
    end
  end

  -- src[from..to] to dst[at..] (plain arrays), PLAIN_SLICE elements per C call.
  local function copy(src, from, to, at, dst)
    while from <= to do
      local last = to - from >= PLAIN_SLICE and from + PLAIN_SLICE - 1 or to
      charge()
      c_move(src, from, last, at, dst)
      at, from = at + (last - from + 1), last + 1
    end
  end

  -- Merges the sorted runs a[lo..mid] and a[mid+1..hi] in place, keeping equal elements in their
  -- order; by `less`, or by `<` when it is nil (numbers and short strings: the usual case, where a
  -- function call per comparison would double the cost). The left run is copied to `buffer` first,
  -- so a merge sort needs half its array again in memory, not all of it: the next element written
  -- always lands before the next one to read from the right run.
  local function merge(a, lo, mid, hi, less, buffer)
    local left = mid - lo + 1
    copy(a, lo, mid, 1, buffer)
    local i, j, n = 1, mid + 1, lo
    if less then
      while i <= left and j <= hi do
        local x, y = buffer[i], a[j]
        if less(y, x) then a[n], j = y, j + 1 else a[n], i = x, i + 1 end
        n = n + 1
      end
    else
      while i <= left and j <= hi do
        local x, y = buffer[i], a[j]
        if y < x then a[n], j = y, j + 1 else a[n], i = x, i + 1 end
        n = n + 1
      end
    end
    if i <= left then copy(buffer, i, left, n, a) end -- what is left of the right run is in place
  end

  -- Sorts t[1..n] (a plain copy of it when t has a metatable, written back at the end): C sorts
  -- runs of `run` elements, each within SORT_BUDGET, which are then merged two by two.
  local function merge_sort(t, n, comp, longest)
    local a = t
    if raw_metatable(t) ~= nil then
      a = {}
      local failed = move_in_slices(t, 1, n, 1, a, META_SLICE, "sort")
      if failed then error(failed, 0) end
    end
    local run = 1
    if longest <= k.SHORT_STRING then
      run = 8192
      -- The script's comparator is Lua code, which the hook counts; C's own `<` is not.
      while comp == nil and run > 2 and run * log(run, 2) * (1 + longest) > k.SORT_BUDGET do
        run = run // 2
      end
      for lo = 1, n, run do
        local hi = lo + run - 1 < n and lo + run - 1 or n
        local part = c_move(a, lo, hi, 1, {})
        charge()
        c_sort(part, comp)
        c_move(part, 1, hi - lo + 1, lo, a)
      end
    end
    local less, buffer = nil, {}
    if comp or longest > k.SHORT_STRING then less = charging(comp or less_than) end
    while run < n do
      for lo = 1, n - run, 2 * run do
        local mid = lo + run - 1
        charge()
        merge(a, lo, mid, mid + run < n and mid + run or n, less, buffer)
      end
      run = 2 * run
    end
    if not rawequal(a, t) then
      local failed = move_in_slices(a, 1, n, 1, t, META_SLICE, "sort")
      if failed then error(failed, 0) end
    end
  end

  -- An error out of the sort, raised again at the script's line. This chunk is stripped bytecode:
  -- an error the VM raises in it (comparing a number with a string) reads "?:-1: ...", where C's
  -- would have no position; C's errors get the script's line, as the wrappers give them; and an
  -- error from the script's comparator keeps its own line.
  local function sorted(ok, message)
    if ok then return end
    if type(message) == "string" then
      local own = c_match(message, "^%?:%-?%d+: (.*)$")
      if own or not c_find(message, "^[^\n:]*:%d+: ") then return finish("sort", false, own or message) end
    end
    error(message, 0)
  end

  function long.sort(t, n, comp, longest)
    return sorted(pcall(merge_sort, t, n, comp, longest))
  end

  -- os.date --------------------------------------------------------------------------------------

  -- A long format in segments that end between two conversions ("%c", or "%Ec" with a modifier),
  -- all with one time, as one call would take it.
  function long.date(fmt, time)
    local prefix = c_sub(fmt, 1, 1) == "!" and "!" or ""
    local body = c_sub(fmt, #prefix + 1)
    if time == nil then time = c_time() end
    local pieces, n, from, len = {}, 0, 1, #body
    while from <= len do
      local to = from + k.DATE_SEGMENT - 1
      if to >= len then
        to = len
      else
        local at = from
        while true do
          local p = c_find(body, "%", at, true)
          if not p or p > to then break end
          local b = c_byte(body, p + 1)
          at = p + ((b == 69 or b == 79) and 3 or 2) -- "%E?" and "%O?" are three bytes long
          if at > to + 1 then
            to = at - 1 < len and at - 1 or len
            break
          end
        end
      end
      charge()
      local ok, piece = pcall(c_date, prefix .. c_sub(body, from, to), time)
      -- C's error names the rest of the format: from here on, C says it.
      if not ok then return finish("date", pcall(c_date, prefix .. c_sub(body, from), time)) end
      n = n + 1
      pieces[n] = piece
      from = to + 1
    end
    return c_concat(pieces)
  end

  return long
end
