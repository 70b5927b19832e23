-- @warden/kv: the guild's persistent key-value store, shared by its scripts.
--
-- Values are plain data: strings, numbers, booleans and tables of them. They are encoded to JSON
-- here, in Lua, with raw table access: the host never touches a guest table (a metamethod run from
-- the host would run outside the CPU budget). The host stores them durably before the call returns.
--
-- Returns a factory; the kernel calls it on a script's first require with:
--   call(op, key, arg, ttl) -> status, result   the host's store (sandbox.py's _kv_service): status
--                                               is OK, ERROR, QUOTA or NO_ROOM below; the ceiling
--                                               is lifted when an answer is pushed
--   fetched()                                   puts the guest's heap ceiling back
--   helpers                                     { describe, utf8_len, gsub, stop, max_key_bytes }
return function(call, fetched, helpers)
local describe, utf8_len, gsub, stop = helpers.describe, helpers.utf8_len, helpers.gsub, helpers.stop
local MAX_KEY_BYTES = helpers.max_key_bytes
local type, next, error, rawlen, rawget = type, next, error, rawlen, rawget
local math_type, format, concat, huge = math.type, string.format, table.concat, math.huge
local MAX_DEPTH = 32
local collect = collectgarbage
-- sandbox.py's KV_OK, KV_QUOTA, KV_NO_ROOM (any other status is an error with a message).
local OK, QUOTA, NO_ROOM = 0, 2, 3

local function fail(message) error("kv: " .. message, 0) end

local function check_key(key)
  if type(key) ~= "string" then fail("keys are strings, got " .. describe(key)) end
  if #key == 0 or #key > MAX_KEY_BYTES then fail("keys are 1 to " .. MAX_KEY_BYTES .. " bytes long, got " .. #key) end
  if not utf8_len(key) then fail("keys must be valid UTF-8 text") end
  return key
end

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function quote(s)
  return '"' .. gsub(s, '[%c"\\]', function(c) return ESCAPES[c] or format("\\u%04x", c:byte()) end) .. '"'
end

local function encode(value, depth, seen, out)
  local t = type(value)
  if t == "string" then
    if not utf8_len(value) then fail("strings must be valid UTF-8 text to be stored") end
    out[#out + 1] = quote(value)
  elseif t == "number" then
    -- describe writes nan as Luau does (Lua's tostring may write "-nan")
    if value ~= value or value == huge or value == -huge then fail("cannot store " .. describe(value)) end
    out[#out + 1] = math_type(value) == "integer" and format("%d", value) or format("%.17g", value)
  elseif t == "boolean" then
    out[#out + 1] = value and "true" or "false"
  elseif t == "table" then
    if seen[value] then fail("cannot store a table that contains itself") end
    if depth >= MAX_DEPTH then fail("cannot store tables nested deeper than " .. MAX_DEPTH .. " levels") end
    seen[value] = true
    local n, count = rawlen(value), 0
    for _ in next, value do count = count + 1 end
    if count > 0 and count == n then
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        encode(rawget(value, i), depth + 1, seen, out)
      end
      out[#out + 1] = "]"
    else
      out[#out + 1] = "{"
      local first = true
      for k, v in next, value do
        if type(k) ~= "string" then
          fail("tables are stored as lists (keys 1..n) or as records (string keys), not a mix; found key " .. describe(k))
        end
        if not utf8_len(k) then fail("table keys must be valid UTF-8 text to be stored") end
        if not first then out[#out + 1] = "," end
        first = false
        out[#out + 1] = quote(k)
        out[#out + 1] = ":"
        encode(v, depth + 1, seen, out)
      end
      out[#out + 1] = "}"
    end
    seen[value] = nil
  else
    fail("cannot store a " .. t .. " value (only strings, numbers, booleans and tables of them)")
  end
end

local function host(op, key, arg, ttl)
  local status, result = call(op, key, arg, ttl)
  fetched()
  if status == NO_ROOM then
    -- The answer does not fit under the guest's ceiling. The guest's own allocations collect
    -- garbage before they fail: so does this, once. The call failed without effect, so it is safe
    -- to make again.
    collect()
    status, result = call(op, key, arg, ttl)
    fetched()
    if status == NO_ROOM then stop("memory_limit") end
  end
  if status ~= OK then
    if status == QUOTA then stop("limit", result) end
    error(result or "kv: this server's VM is closing", 0)
  end
  return result
end

local kv = {}

function kv.get(key)
  return host("get", check_key(key))
end

function kv.set(key, value, ttl_seconds)
  check_key(key)
  if value == nil then return kv.delete(key) end
  if ttl_seconds ~= nil and (type(ttl_seconds) ~= "number" or not (ttl_seconds > 0) or ttl_seconds == huge) then
    fail("the expiry is a positive number of seconds, got " .. describe(ttl_seconds))
  end
  local out = {}
  encode(value, 0, {}, out)
  host("set", key, concat(out), ttl_seconds)
end

function kv.delete(key)
  return host("delete", check_key(key))
end

function kv.incr(key, by)
  if by == nil then by = 1 end
  if type(by) ~= "number" or by ~= by or by == huge or by == -huge then
    fail("incr adds a finite number, got " .. describe(by))
  end
  return host("incr", check_key(key), by)
end

function kv.keys(prefix)
  if prefix == nil then prefix = "" end
  if type(prefix) ~= "string" or not utf8_len(prefix) then fail("the prefix is a string, got " .. describe(prefix)) end
  return host("keys", prefix)
end

return kv -- the kernel hands scripts a read-only view of it
end
