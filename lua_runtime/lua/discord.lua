-- @warden/discord: the moderation actions a script can ask for.
--
-- Nothing here talks to Discord. Each builder checks its arguments, so that a mistake is reported
-- at the author's line (error level 3: the script's call of the builder), and appends one plain
-- action table that the bot executes after the handler returns, in order, once it has checked the
-- script's capabilities and the target guild.
--
-- Returns a factory; the kernel calls it, on a script's first require, with push (appends an action,
-- enforcing the per-event quota) and helpers: describe, utf8_len, find, and max_delete_after (the
-- longest task delay, when the host configured task; DEFAULT_MAX_DELETE_AFTER otherwise).
return function(push, helpers)
local describe, utf8_len, find = helpers.describe, helpers.utf8_len, helpers.find
local type, error, next, floor = type, error, next, math.floor

-- A message's delete_after is waited out in the bot's process, as a task timer is, and is lost with
-- it on a restart: it has the ceiling of task delays (SandboxLimits.max_timer_delay_seconds).
local DEFAULT_MAX_DELETE_AFTER = 900
local MAX_DELETE_AFTER = helpers.max_delete_after or DEFAULT_MAX_DELETE_AFTER
local MIN_DELETE_AFTER = 1

local MAX_CONTENT = 2000 -- Discord's limit on a message's content, in characters
local MAX_REASON = 400 -- the audit log keeps 512; "Warden script <name>: " takes the rest
local MAX_TIMEOUT = 28 * 24 * 3600 -- Discord refuses timeouts longer than 28 days
local MAX_BAN_DELETE = 7 * 24 * 3600

-- Level 0: the kernel finds the author's line on the stack, however deep the check that failed.
local function fail(message) error(message, 0) end

local function snowflake(v, what)
  if type(v) == "string" and #v >= 15 and #v <= 20 and not find(v, "%D") then return v end
  if type(v) == "number" then
    fail(what .. " must be an id string such as msg.author.id, not a number (numbers lose digits past 2^53)")
  end
  fail(what .. " must be an id string such as msg.author.id, got " .. describe(v))
end

local function text(v, what, max, optional)
  if v == nil and optional then return nil end
  if type(v) ~= "string" then fail(what .. " must be a string, got " .. describe(v)) end
  local n = utf8_len(v)
  if not n then fail(what .. " is not valid UTF-8 text") end
  if n == 0 and not optional then fail(what .. " must not be empty") end
  if n > max then fail(what .. " is " .. n .. " characters long; the limit is " .. max) end
  return v
end

local function whole(v, what, lo, hi)
  if type(v) ~= "number" or v ~= v or floor(v) ~= v then
    fail(what .. " must be a whole number, got " .. describe(v))
  end
  if v < lo or v > hi then fail(what .. " must be between " .. lo .. " and " .. hi .. ", got " .. describe(v)) end
  return floor(v)
end

-- Embeds: only the fields Discord documents, copied into fresh tables so that nothing the script
-- keeps a reference to (or a cycle) leaves the VM.
local EMBED_TEXT = { title = 256, description = 4096, url = 2048 }
local function embed(e, i)
  local what = "embeds[" .. i .. "]"
  if type(e) ~= "table" then fail(what .. " must be a table, got " .. describe(e)) end
  local out, total = {}, 0
  for key, value in next, e do
    if EMBED_TEXT[key] then
      out[key] = text(value, what .. "." .. key, EMBED_TEXT[key])
      total = total + utf8_len(value)
    elseif key == "color" then
      out.color = whole(value, what .. ".color", 0, 0xFFFFFF)
    elseif key == "footer" or key == "author" then
      local field = key == "footer" and "text" or "name"
      if type(value) ~= "table" then fail(what .. "." .. key .. " must be a table like { " .. field .. " = \"...\" }") end
      out[key] = { [field] = text(value[field], what .. "." .. key .. "." .. field, key == "footer" and 2048 or 256) }
      total = total + utf8_len(value[field])
    elseif key == "fields" then
      if type(value) ~= "table" or #value > 25 then fail(what .. ".fields must be a list of at most 25 tables") end
      out.fields = {}
      for j = 1, #value do
        local f, fw = value[j], what .. ".fields[" .. j .. "]"
        if type(f) ~= "table" then fail(fw .. " must be a table like { name = \"...\", value = \"...\" }") end
        out.fields[j] = { name = text(f.name, fw .. ".name", 256), value = text(f.value, fw .. ".value", 1024),
                          inline = f.inline == true }
        total = total + utf8_len(f.name) + utf8_len(f.value)
      end
    else
      fail(what .. " has an unknown field " .. describe(key)
        .. " (use title, description, url, color, footer, author, fields)")
    end
  end
  return out, total
end

-- Seconds before the bot deletes the message it sends; fractions allowed, as for task.wait. A whole
-- number is kept whole, so that dry runs show delete_after=10 rather than 10.0.
local function delete_after(v)
  if type(v) ~= "number" or v ~= v then
    fail("delete_after must be a number of seconds, got " .. describe(v))
  end
  if v < MIN_DELETE_AFTER or v > MAX_DELETE_AFTER then
    fail("delete_after must be between " .. MIN_DELETE_AFTER .. " and " .. MAX_DELETE_AFTER
      .. " seconds, got " .. describe(v))
  end
  return floor(v) == v and floor(v) or v
end

-- The second argument of send and reply: a string, or { content = ..., embeds = { ... }, delete_after = ... }.
local function message_body(action, body)
  if type(body) ~= "table" then
    action.content = text(body, "content", MAX_CONTENT)
    return action
  end
  action.content = text(body.content, "content", MAX_CONTENT, true)
  local embeds = body.embeds
  if embeds ~= nil then
    if type(embeds) ~= "table" or #embeds > 10 then fail("embeds must be a list of at most 10 tables") end
    local list, total = {}, 0
    for i = 1, #embeds do
      local e, n = embed(embeds[i], i)
      list[i], total = e, total + n
    end
    if total > 6000 then fail("embeds hold " .. total .. " characters in all; the limit is 6000") end
    if #list > 0 then action.embeds = list end
  end
  if action.content == nil or action.content == "" then
    if not action.embeds then fail("a message needs content or at least one embed") end
    action.content = nil
  end
  if body.delete_after ~= nil then action.delete_after = delete_after(body.delete_after) end
  return action
end

local function reason(v) return text(v, "reason", MAX_REASON, true) end

local discord = {}

function discord.reply(msg, body)
  if type(msg) ~= "table" then fail("reply needs the message to answer (the handler's msg), got " .. describe(msg)) end
  local action = { type = "reply", channel_id = snowflake(msg.channel_id, "msg.channel_id"),
                   message_id = snowflake(msg.id, "msg.id") }
  push(message_body(action, body))
end

function discord.send(channel_id, body)
  push(message_body({ type = "send", channel_id = snowflake(channel_id, "channel_id") }, body))
end

function discord.delete_message(channel_id, message_id)
  push({ type = "delete_message", channel_id = snowflake(channel_id, "channel_id"),
         message_id = snowflake(message_id, "message_id") })
end

function discord.react(channel_id, message_id, emoji)
  push({ type = "react", channel_id = snowflake(channel_id, "channel_id"),
         message_id = snowflake(message_id, "message_id"), emoji = text(emoji, "emoji", 100) })
end

function discord.timeout(user_id, seconds, why)
  push({ type = "timeout", user_id = snowflake(user_id, "user_id"),
         seconds = whole(seconds, "seconds", 1, MAX_TIMEOUT), reason = reason(why) })
end

function discord.kick(user_id, why)
  push({ type = "kick", user_id = snowflake(user_id, "user_id"), reason = reason(why) })
end

function discord.ban(user_id, why, delete_message_seconds)
  push({ type = "ban", user_id = snowflake(user_id, "user_id"), reason = reason(why),
         delete_message_seconds = delete_message_seconds == nil and 0
           or whole(delete_message_seconds, "delete_message_seconds", 0, MAX_BAN_DELETE) })
end

function discord.add_role(user_id, role_id, why)
  push({ type = "add_role", user_id = snowflake(user_id, "user_id"), role_id = snowflake(role_id, "role_id"),
         reason = reason(why) })
end

function discord.remove_role(user_id, role_id, why)
  push({ type = "remove_role", user_id = snowflake(user_id, "user_id"), role_id = snowflake(role_id, "role_id"),
         reason = reason(why) })
end

function discord.log(content)
  push({ type = "log", content = text(content, "content", MAX_CONTENT) })
end

return discord -- the kernel hands scripts a read-only view of it
end
