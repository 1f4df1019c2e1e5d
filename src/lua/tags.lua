-- tags: the partition tags of key layout 2 (src/layout.h, keys.h), for the scripts that
-- name a customer's keys from its id (scripts/embed-lua puts this file where a script says
-- "--#include tags.lua"). TAGS holds the 256 tags in partition order, each padded with
-- spaces to 10 bytes: store.c replaces the placeholder below with layout_tags_text() when
-- it loads the scripts (one constant string: no table is built per call).
local TAGS = '@LAYOUT_TAGS@'
if #TAGS ~= 2560 then return redis.error_reply('tags.lua: TAGS not filled in (store.c)') end

-- The tag of a customer: partition (CID mod 65521) mod 256 over the decimal digits of its
-- id's text (layout_part_of_cid; a leading '-' is skipped). Exact in Lua's doubles.
local function tag_of_cid(cid)
  local h = 0
  for k = 1, #cid do
    local d = string.byte(cid, k) - 48
    if d >= 0 and d <= 9 then h = (h * 10 + d) % 65521 end
  end
  local at = (h % 256) * 10
  return (string.match(string.sub(TAGS, at + 1, at + 10), '^[^ ]+'))
end
