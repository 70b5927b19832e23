-- @warden/discord: the moderation actions a script can ask for.
--
-- Nothing here talks to Discord. Each builder checks its arguments, so that a mistake is reported
-- at the author's line (error level 0: the kernel finds the author's line on the stack, however
-- deep the check that failed), and appends one plain action table that the bot executes after the
-- handler returns, in order, once it has checked the script's capabilities and the target guild.
--
-- Returns a factory; the kernel calls it, on a script's first require, with push (appends an action,
-- enforcing the per-event quota) and helpers: describe, utf8_len, find, and max_delete_after (the
-- longest task delay, when the host configured task; DEFAULT_MAX_DELETE_AFTER otherwise).
--
-- Every guild VM whose scripts use Discord carries what this module leaves behind, and each function
-- costs its prototype whether it runs or not. So the builders are closures of one prototype, each
-- driven by its action's parameter list (BUILDERS), and one function checks any parameter by name.
return function(push, helpers)
local describe, utf8_len, find = helpers.describe, helpers.utf8_len, helpers.find
local type, error, next, floor, select = type, error, next, math.floor, select

-- A message's delete_after is waited out in the bot's process, as a task timer is, and is lost with
-- it on a restart: it has the ceiling of task delays (SandboxLimits.max_timer_delay_seconds).
local DEFAULT_MAX_DELETE_AFTER = 900
local MAX_DELETE_AFTER = helpers.max_delete_after or DEFAULT_MAX_DELETE_AFTER
local MIN_DELETE_AFTER = 1

local MAX_CONTENT = 2000 -- Discord's limit on a message's content, in characters
local MAX_REASON = 400 -- the audit log keeps 512; "Warden script <name>: " takes the rest
local MAX_TIMEOUT = 28 * 24 * 3600 -- Discord refuses timeouts longer than 28 days
local MAX_BAN_DELETE = 7 * 24 * 3600

local function text(v, what, max, optional)
  if v == nil and optional then return nil end
  if type(v) ~= "string" then error(what .. " must be a string, got " .. describe(v), 0) end
  local n = utf8_len(v)
  if not n then error(what .. " is not valid UTF-8 text", 0) end
  if n == 0 and not optional then error(what .. " must not be empty", 0) end
  if n > max then error(what .. " is " .. n .. " characters long; the limit is " .. max, 0) end
  return v
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

-- Embeds: only the fields Discord documents, copied into fresh tables so that nothing the script
-- keeps a reference to (or a cycle) leaves the VM.
local EMBED_TEXT = { title = 256, description = 4096, url = 2048 }
local function embed(e, i)
  local what = "embeds[" .. i .. "]"
  if type(e) ~= "table" then error(what .. " must be a table, got " .. describe(e), 0) end
  local out, total = {}, 0
  for key, value in next, e do
    if EMBED_TEXT[key] then
      out[key] = text(value, what .. "." .. key, EMBED_TEXT[key])
      total = total + utf8_len(value)
    elseif key == "color" then
      out.color = whole(value, what .. ".color", 0, 0xFFFFFF)
    elseif key == "footer" or key == "author" then
      local field = key == "footer" and "text" or "name"
      if type(value) ~= "table" then
        error(what .. "." .. key .. " must be a table like { " .. field .. " = \"...\" }", 0)
      end
      out[key] = { [field] = text(value[field], what .. "." .. key .. "." .. field, key == "footer" and 2048 or 256) }
      total = total + utf8_len(value[field])
    elseif key == "fields" then
      if type(value) ~= "table" or #value > 25 then error(what .. ".fields must be a list of at most 25 tables", 0) end
      out.fields = {}
      for j = 1, #value do
        local f, fw = value[j], what .. ".fields[" .. j .. "]"
        if type(f) ~= "table" then error(fw .. " must be a table like { name = \"...\", value = \"...\" }", 0) end
        out.fields[j] = { name = text(f.name, fw .. ".name", 256), value = text(f.value, fw .. ".value", 1024),
                          inline = f.inline == true }
        total = total + utf8_len(f.name) + utf8_len(f.value)
      end
    else
      error(what .. " has an unknown field " .. describe(key)
        .. " (use title, description, url, color, footer, author, fields)", 0)
    end
  end
  return out, total
end

-- The second argument of send and reply: a string, or { content = ..., embeds = { ... }, delete_after = ... }.
local function message_body(action, body)
  if type(body) ~= "table" then
    action.content = text(body, "content", MAX_CONTENT)
    return
  end
  action.content = text(body.content, "content", MAX_CONTENT, true)
  local embeds = body.embeds
  if embeds ~= nil then
    if type(embeds) ~= "table" or #embeds > 10 then error("embeds must be a list of at most 10 tables", 0) end
    local list, total = {}, 0
    for i = 1, #embeds do
      local e, n = embed(embeds[i], i)
      list[i], total = e, total + n
    end
    if total > 6000 then error("embeds hold " .. total .. " characters in all; the limit is 6000", 0) end
    if #list > 0 then action.embeds = list end
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
-- the action's field names, but for "msg" (the message reply answers) and "body" (a message's
-- content, embeds and delete_after).
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
    message_body(action, v)
  elseif name == "msg" then
    if type(v) ~= "table" then
      error("reply needs the message to answer (the handler's msg), got " .. describe(v), 0)
    end
    set(action, "msg.channel_id", v.channel_id)
    set(action, "msg.id", v.id)
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
