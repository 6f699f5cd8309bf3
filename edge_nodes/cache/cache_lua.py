"""The server-side half of the edge cache: a Redis Functions library (Lua).

One FCALL handles a whole batch of requests in order, so capacity accounting, admission,
LRU eviction and prefetch are atomic on the server: concurrent clients of one edge can
interleave only between batches, never inside a request.

Keys (all under the edge's prefix): `lru` zset, one member '<content id>|<size bytes>' per
cached entry, score 2*tick, +1 while the entry is a prefetch not yet requested (so LRU
order, size and prefetch state come back in the single ZPOPMIN of an eviction);
`meta` hash: tick, used (items or bytes), pfw (weight of pending prefetches);
`user:<id>` string: the user's top predicted content ids, comma-separated, with a TTL.
The demand-aware mode (`edgecache_demand_v2`) has its own keys, see `cache_lua_demand`.
"""

from edge_nodes.cache.cache_lua_demand import DEMAND_LUA

LIBRARY_NAME = "edgecache"
LIBRARY_VERSION = "2"
FUNCTION = "edgecache_batch_v" + LIBRARY_VERSION
DEMAND_FUNCTION = "edgecache_demand_v2"

LRU_LUA = r"""

-- An entry is the zset member '<content id>|<size>' so eviction needs one call (ZPOPMIN);
-- its score is 2*tick (+1 while it is a prefetch nobody has requested yet).
local function split(s)
  local t, n = {}, 0
  for w in string.gmatch(s, '%S+') do n = n + 1; t[n] = w end
  return t, n
end

local function make_room(k, st, w)
  while st.used + w > st.cap do
    local v = redis.call('ZPOPMIN', k.lru)
    if #v == 0 then break end
    local vw = st.items and 1 or tonumber(string.match(v[1], '|(%d+)$'))
    st.used = st.used - vw
    if tonumber(v[2]) % 2 == 1 then st.pfw = st.pfw - vw; st.wasted = st.wasted + 1 end
  end
end

local function admit(k, st, member, size, prefetched)
  local w = st.items and 1 or size
  if w > st.cap then return false end
  make_room(k, st, w)
  st.tick = st.tick + 1
  redis.call('ZADD', k.lru, 2 * st.tick + (prefetched and 1 or 0), member)
  st.used = st.used + w
  if prefetched then st.pfw = st.pfw + w end
  return true
end

-- KEYS: lru meta
-- ARGV: cap unit_items ttl budget req_bytes0 pf_bytes0 pf_cap prefetch_on_hit k user_prefix
--       items sizes users preds pred_sizes   (space-separated; '-' = no prediction)
local function batch(keys, args)
  local k = {lru = keys[1], meta = keys[2]}
  local m = redis.call('HMGET', k.meta, 'tick', 'used', 'pfw')
  local st = {cap = tonumber(args[1]), items = args[2] == '1', tick = tonumber(m[1]) or 0,
              used = tonumber(m[2]) or 0, pfw = tonumber(m[3]) or 0, wasted = 0}
  local ttl, budget = tonumber(args[3]), tonumber(args[4])
  local req_bytes, pf_bytes0 = tonumber(args[5]), tonumber(args[6])
  local pf_cap, on_hit, kk, uprefix = tonumber(args[7]), args[8] == '1', tonumber(args[9]), args[10]
  local items, n = split(args[11])
  local sizes, users = split(args[12]), split(args[13])
  local preds, psizes = split(args[14]), split(args[15])
  local flags, last_user = {}, {}
  local pf_n, pf_bytes, pf_used = 0, 0, 0
  for i = 1, n do
    local size = tonumber(sizes[i])
    local member = items[i] .. '|' .. sizes[i]
    local score = redis.call('ZSCORE', k.lru, member)
    if score then
      st.tick = st.tick + 1
      redis.call('ZADD', k.lru, 2 * st.tick, member)
      if tonumber(score) % 2 == 1 then
        pf_used = pf_used + 1; st.pfw = st.pfw - (st.items and 1 or size)
      end
      flags[i] = '1'
    else
      admit(k, st, member, size, false)
      flags[i] = '0'
    end
    req_bytes = req_bytes + size
    if kk > 0 then
      last_user[users[i]] = i
      if on_hit or not score then
        for j = (i - 1) * kk + 1, i * kk do
          local p, ps = preds[j], tonumber(psizes[j])
          local pw = st.items and 1 or ps
          if p ~= '-' and pf_bytes0 + pf_bytes + ps <= budget * req_bytes and st.pfw + pw <= pf_cap then
            local pm = p .. '|' .. psizes[j]
            if not redis.call('ZSCORE', k.lru, pm) and admit(k, st, pm, ps, true) then
              pf_n = pf_n + 1; pf_bytes = pf_bytes + ps
            end
          end
        end
      end
    end
  end
  for u, i in pairs(last_user) do
    local top = {}
    for j = (i - 1) * kk + 1, i * kk do if preds[j] ~= '-' then top[#top + 1] = preds[j] end end
    redis.call('SET', uprefix .. u, table.concat(top, ','), 'EX', ttl)
  end
  redis.call('HSET', k.meta, 'tick', st.tick, 'used', st.used, 'pfw', st.pfw)
  return {table.concat(flags), pf_n, tostring(pf_bytes), pf_used, st.wasted}
end

redis.register_function('edgecache_batch_v2', batch)
"""

LUA = "#!lua name=edgecache\n" + LRU_LUA + DEMAND_LUA
