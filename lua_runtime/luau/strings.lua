-- Luau's string.split.
--
-- A group of the Luau standard library (see stdlib.lua): compiled into a guild VM the first time a
-- script calls string.split. Called with the helpers stdlib.lua passes every group, returns
-- { split = f }.
local C, argerror, _, _, _, num2str = ...
local type = type
local find, sub, gsub = C.find, C.sub, C.gsub

-- Where the next `sep` starts in `s`, from `init`. C's plain find compares the whole separator at
-- every position where its first byte matches: O(#s * #sep) in one C call, which the sandbox's
-- hook cannot stop. So a separator longer than BLOCK is found by its first BLOCK bytes, then checked
-- one BLOCK at a time (`blocks`: anchored patterns of the rest): each C call does bounded work, and
-- the hook runs between them.
local BLOCK = 64
local function find_separator(s, sep, blocks, init)
  local head = blocks and sub(sep, 1, BLOCK) or sep
  local a = find(s, head, init, true)
  while a and blocks do
    local k = 2
    while blocks[k] and find(s, blocks[k], a + (k - 1) * BLOCK) do k = k + 1 end
    if not blocks[k] then return a end
    a = find(s, head, a + 1, true)
  end
  return a
end

local function split(s, sep)
  if type(s) == "number" then s = num2str(s) end
  if type(s) ~= "string" then argerror(1, "split", "string expected, got " .. type(s)) end
  sep = sep or ","
  local parts, n, i = {}, 0, 1
  if sep == "" then
    for k = 1, #s do parts[k] = sub(s, k, k) end
    return parts
  end
  local blocks
  if #sep > BLOCK then
    blocks = {}
    for k = 1, #sep, BLOCK do blocks[#blocks + 1] = "^" .. gsub(sub(sep, k, k + BLOCK - 1), "%W", "%%%0") end
  end
  while true do
    local a = find_separator(s, sep, blocks, i)
    n = n + 1
    parts[n] = sub(s, i, (a or 0) - 1)
    if not a then return parts end
    i = a + #sep
  end
end

return { split = split }
