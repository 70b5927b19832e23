-- @warden/discord: the moderation actions a script can ask for.
--
-- Nothing here talks to Discord. Each builder checks its arguments, so that a mistake is reported
-- at the author's line (error level 0: the kernel finds the author's line on the stack, however
-- deep the check that failed), and appends one plain action table that the bot executes after the
-- handler returns, in order, once it has checked the script's capabilities and the target guild.
--
-- A builder never reads a script's table twice and never runs its metamethods: a __len or __index
-- may answer differently each time it is asked (a body checked with 10 embeds could be sent with
-- 2,500), and would run the script's code inside the builder. So a message body is first copied,
-- whole and once, with raw reads, into a plain table (copy below); only the copy is checked,
-- and the action is built from the copy. Of the message reply answers, its two ids are read raw.
--
-- Returns a factory; the kernel calls it, on a script's first require, with push (appends an action,
-- enforcing the per-event quota and the server's action window) and helpers: describe, utf8_len,
-- find, contents (the fields of a table the script froze), charge (checks the CPU budget now),
-- and max_delete_after (the longest task delay, when the host configured task;
-- DEFAULT_MAX_DELETE_AFTER otherwise).
--
-- Every guild VM whose scripts use Discord carries what this module leaves behind, and each function
-- costs its prototype whether it runs or not. So the builders are closures of one prototype, each
-- driven by its action's parameter list (BUILDERS), and one function checks any parameter by name.
return function(push, helpers)
local function itself(v) return v end -- contents and charge when the host gives none (tests)
local describe, utf8_len, find = helpers.describe, helpers.utf8_len, helpers.find
local contents, charge = helpers.contents or itself, helpers.charge or itself
local type, error, next, rawget, floor, select, math_type = type, error, next, rawget, math.floor, select, math.type

-- A message's delete_after is waited out in the bot's process, as a task timer is, and is lost with
-- it on a restart: it has the ceiling of task delays (SandboxLimits.max_timer_delay_seconds).
local DEFAULT_MAX_DELETE_AFTER = 900
local MAX_DELETE_AFTER = helpers.max_delete_after or DEFAULT_MAX_DELETE_AFTER
local MIN_DELETE_AFTER = 1

-- Discord's limits on a message (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
local MAX_CONTENT = 2000 -- characters of content
local MAX_EMBEDS = 10
local MAX_FIELDS = 25 -- per embed
local MAX_EMBED_TEXT = 6000 -- characters of title, description, field names and values, footer and author, in all embeds
local MAX_REASON = 400 -- the audit log keeps 512; "Warden script <name>: " takes the rest
local MAX_TIMEOUT = 28 * 24 * 3600 -- Discord refuses timeouts longer than 28 days
local MAX_BAN_DELETE = 7 * 24 * 3600

-- Copying ------------------------------------------------------------------------------------------

-- The deepest a valid body nests: body, embeds, an embed, its fields, a field.
local MAX_DEPTH = 5
-- The most entries a valid body has: its 3 keys, 10 embeds, and per embed 7 keys, footer's and
-- author's one each, 25 fields and their 3 keys each. A copy stops past it: a script's table may
-- hold millions.
local MAX_ENTRIES = 3 + MAX_EMBEDS * (1 + 7 + 2 + MAX_FIELDS * 4)
-- Stands in, in a copy, for a table nested deeper than MAX_DEPTH: no valid body has one there, so
-- checking the copy rejects it where it is (a body that contains itself ends up here too).
local TOO_DEEP = {}
local copied = 0 -- entries copied so far by the current copy

-- A plain copy of table `t` at `depth` (1 for a builder's argument: see the top of this file).
local function copy(t, depth)
  if depth == 1 then copied = 0 end
  local out = {}
  for k, v in next, contents(t) do
    copied = copied + 1
    if copied > MAX_ENTRIES then
      error("the message table has more than " .. MAX_ENTRIES .. " entries; a message has at most "
        .. MAX_EMBEDS .. " embeds of " .. MAX_FIELDS .. " fields", 0)
    end
    if type(v) == "table" then v = depth < MAX_DEPTH and copy(v, depth + 1) or TOO_DEEP end
    out[k] = v
  end
  return out
end

-- Checking -----------------------------------------------------------------------------------------

-- Strings longer than this are costly enough for utf8.len to check the CPU budget first.
local COSTLY = 65536

local function text(v, what, max, optional)
  if v == nil and optional then return nil, 0 end
  if type(v) ~= "string" then error(what .. " must be a string, got " .. describe(v), 0) end
  if #v > COSTLY then charge() end
  local n = utf8_len(v)
  if not n then error(what .. " is not valid UTF-8 text", 0) end
  if n == 0 and not optional then error(what .. " must not be empty", 0) end
  if n > max then error(what .. " is " .. n .. " characters long; the limit is " .. max, 0) end
  return v, n
end

local function whole(v, what, lo, hi)
  if type(v) ~= "number" or v ~= v or floor(v) ~= v then
    error(what .. " must be a whole number, got " .. describe(v), 0)
  end
  if v < lo or v > hi then
    error(what .. " must be between " .. lo .. " and " .. hi .. ", got " .. describe(v), 0)
  end
  return floor(v)
end

-- The length of `t`, a copy, checked to be a list (keys 1 to n) of at most `max` items; `like`
-- shows an item.
local function list(t, what, max, like)
  if type(t) ~= "table" then
    error(what .. " must be a list of at most " .. max .. " tables like " .. like .. ", got " .. describe(t), 0)
  end
  local n = 0
  for k in next, t do
    if math_type(k) ~= "integer" or k < 1 then
      error(what .. " must be a list (keys 1, 2, 3...), found the key " .. describe(k), 0)
    end
    n = n + 1
  end
  if n > max then error(what .. " has " .. n .. " items; the limit is " .. max, 0) end
  for i = 1, n do
    if t[i] == nil then error(what .. " must be a list without holes; item " .. i .. " is missing", 0) end
  end
  return n
end

-- A footer or author table: its one text field, `field` (Discord's other ones, such as icon_url,
-- are not supported and left out).
local function one_text(value, what, field, max)
  if type(value) ~= "table" then error(what .. " must be a table like { " .. field .. " = \"...\" }", 0) end
  local v, n = text(value[field], what .. "." .. field, max)
  return { [field] = v }, n
end

local FIELD_LIKE = "{ name = \"...\", value = \"...\" }"
local function field(f, what)
  if type(f) ~= "table" then error(what .. " must be a table like " .. FIELD_LIKE, 0) end
  local out, total = { inline = false }, 0
  for key, v in next, f do
    local n
    if key == "name" then
      out.name, n = text(v, what .. ".name", 256)
    elseif key == "value" then
      out.value, n = text(v, what .. ".value", 1024)
    elseif key == "inline" then
      out.inline, n = v == true, 0
    else
      error(what .. " has an unknown field " .. describe(key) .. " (use name, value, inline)", 0)
    end
    total = total + n
  end
  if out.name == nil then error(what .. ".name must be a string, got nil", 0) end
  if out.value == nil then error(what .. ".value must be a string, got nil", 0) end
  return out, total
end

-- Embeds: only the fields Discord documents, into fresh tables.
local EMBED_TEXT = { title = 256, description = 4096 }
local function embed(e, i)
  local what = "embeds[" .. i .. "]"
  if type(e) ~= "table" then error(what .. " must be a table, got " .. describe(e), 0) end
  local out, total = {}, 0
  for key, value in next, e do
    local n = 0
    if EMBED_TEXT[key] then
      out[key], n = text(value, what .. "." .. key, EMBED_TEXT[key])
    elseif key == "url" then
      out.url = text(value, what .. ".url", 2048) -- not counted in the 6000: Discord does not
    elseif key == "color" then
      out.color = whole(value, what .. ".color", 0, 0xFFFFFF)
    elseif key == "footer" then
      out.footer, n = one_text(value, what .. ".footer", "text", 2048)
    elseif key == "author" then
      out.author, n = one_text(value, what .. ".author", "name", 256)
    elseif key == "fields" then
      local fw = what .. ".fields"
      local fields = {}
      for j = 1, list(value, fw, MAX_FIELDS, FIELD_LIKE) do
        local f, m = field(value[j], fw .. "[" .. j .. "]")
        fields[j], n = f, n + m
      end
      out.fields = fields
    else
      error(what .. " has an unknown field " .. describe(key)
        .. " (use title, description, url, color, footer, author, fields)", 0)
    end
    total = total + n
  end
  return out, total
end

-- The second argument of send and reply, copied: a string, or { content = ..., embeds = { ... },
-- delete_after = ... }.
local function message_body(action, body)
  if type(body) ~= "table" then
    action.content = text(body, "content", MAX_CONTENT)
    return
  end
  for key in next, body do
    if key ~= "content" and key ~= "embeds" and key ~= "delete_after" then
      error("the message table has an unknown field " .. describe(key) .. " (use content, embeds, delete_after)", 0)
    end
  end
  action.content = text(body.content, "content", MAX_CONTENT, true)
  local embeds = body.embeds
  if embeds ~= nil then
    local embeds_out, total = {}, 0
    for i = 1, list(embeds, "embeds", MAX_EMBEDS, "{ title = \"...\" }") do
      local e, n = embed(embeds[i], i)
      embeds_out[i], total = e, total + n
    end
    if total > MAX_EMBED_TEXT then
      error("embeds hold " .. total .. " characters in all; the limit is " .. MAX_EMBED_TEXT, 0)
    end
    if embeds_out[1] then action.embeds = embeds_out end
  end
  if action.content == nil or action.content == "" then
    if not action.embeds then error("a message needs content or at least one embed", 0) end
    action.content = nil
  end
  -- Seconds before the bot deletes the message it sends; fractions allowed, as for task.wait. A
  -- whole number is kept whole, so that dry runs show delete_after=10 rather than 10.0.
  local v = body.delete_after
  if v == nil then return end
  if type(v) ~= "number" or v ~= v then
    error("delete_after must be a number of seconds, got " .. describe(v), 0)
  end
  if v < MIN_DELETE_AFTER or v > MAX_DELETE_AFTER then
    error("delete_after must be between " .. MIN_DELETE_AFTER .. " and " .. MAX_DELETE_AFTER
      .. " seconds, got " .. describe(v), 0)
  end
  action.delete_after = floor(v) == v and floor(v) or v
end

-- Checks builder parameter `name`, given `v`, and sets the action's fields from it. The names are
-- the action's field names, but for "msg" (the message reply answers: its two ids are read, raw and
-- once each) and "body" (a message's content, embeds and delete_after: checked in a copy).
local function set(action, name, v)
  if name == "reason" then
    action.reason = text(v, "reason", MAX_REASON, true)
  elseif name == "content" then
    action.content = text(v, "content", MAX_CONTENT)
  elseif name == "emoji" then
    action.emoji = text(v, "emoji", 100)
  elseif name == "seconds" then
    action.seconds = whole(v, "seconds", 1, MAX_TIMEOUT)
  elseif name == "delete_message_seconds" then
    action.delete_message_seconds = v == nil and 0 or whole(v, name, 0, MAX_BAN_DELETE)
  elseif name == "body" then
    message_body(action, type(v) == "table" and copy(v, 1) or v)
  elseif name == "msg" then
    if type(v) ~= "table" then
      error("reply needs the message to answer (the handler's msg), got " .. describe(v), 0)
    end
    local msg = contents(v)
    set(action, "msg.channel_id", rawget(msg, "channel_id"))
    set(action, "msg.id", rawget(msg, "id"))
  else
    -- A snowflake: channel_id, message_id, user_id, role_id, or the two ids of msg.
    if type(v) == "string" and #v >= 15 and #v <= 20 and not find(v, "%D") then
      action[name == "msg.id" and "message_id" or name == "msg.channel_id" and "channel_id" or name] = v
    elseif type(v) == "number" then
      error(name .. " must be an id string such as msg.author.id, not a number (numbers lose digits past 2^53)", 0)
    else
      error(name .. " must be an id string such as msg.author.id, got " .. describe(v), 0)
    end
  end
end

-- Each builder's action type, then its parameters in the order a script passes them (and in which
-- they are checked); docs/scripting.md has a section for each builder.
local BUILDERS = {
  { "reply", "msg", "body" },
  { "send", "channel_id", "body" },
  { "delete_message", "channel_id", "message_id" },
  { "react", "channel_id", "message_id", "emoji" },
  { "timeout", "user_id", "seconds", "reason" },
  { "kick", "user_id", "reason" },
  { "ban", "user_id", "reason", "delete_message_seconds" },
  { "add_role", "user_id", "role_id", "reason" },
  { "remove_role", "user_id", "role_id", "reason" },
  { "log", "content" },
}

local discord = {}
for i = 1, #BUILDERS do
  local spec = BUILDERS[i]
  discord[spec[1]] = function(...)
    local action = { type = spec[1] }
    for j = 2, #spec do set(action, spec[j], (select(j - 1, ...))) end
    push(action)
  end
end

return discord -- the kernel hands scripts a read-only view of it
end
