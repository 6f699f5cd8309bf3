"""The server-side half of the edge cache: a Redis Functions library (Lua).

One FCALL handles a whole batch of requests in order, so capacity accounting, admission,
LRU eviction and prefetch are atomic on the server: concurrent clients of one edge can
interleave only between batches, never inside a request.

Keys (all under the edge's prefix): `lru` zset member=content id, score=logical tick;
`size` hash content id -> bytes; `pf` hash of prefetched items not yet requested;
`meta` hash: tick, used (items or bytes), pfw (weight of pending prefetches);
`user:<id>` string: the user's top predicted content ids, comma-separated, with a TTL.
"""

LIBRARY_NAME = "edgecache"
LIBRARY_VERSION = "1"
FUNCTION = "edgecache_batch_v" + LIBRARY_VERSION

LUA = r"""#!lua name=edgecache

local function split(s)
  local t, n = {}, 0
  for w in string.gmatch(s, '%S+') do n = n + 1; t[n] = w end
  return t, n
end

-- Evict in LRU order until `w` more fits; returns counts of unused prefetches evicted.
local function make_room(k, st, w)
  local wasted = 0
  while st.used + w > st.cap do
    local v = redis.call('ZPOPMIN', k.lru)
    if #v == 0 then break end
    local vs = tonumber(redis.call('HGET', k.size, v[1])) or 0
    redis.call('HDEL', k.size, v[1])
    local vw = st.items and 1 or vs
    st.used = st.used - vw
    if redis.call('HDEL', k.pf, v[1]) == 1 then st.pfw = st.pfw - vw; wasted = wasted + 1 end
  end
  return wasted
end

local function admit(k, st, c, size, prefetched)
  local w = st.items and 1 or size
  if w > st.cap then return false end
  st.wasted = st.wasted + make_room(k, st, w)
  st.tick = st.tick + 1
  redis.call('ZADD', k.lru, st.tick, c)
  redis.call('HSET', k.size, c, size)
  st.used = st.used + w
  if prefetched then redis.call('HSET', k.pf, c, 1); st.pfw = st.pfw + w end
  return true
end

-- KEYS: lru size pf meta
-- ARGV: cap unit_items ttl budget req_bytes0 pf_bytes0 pf_cap prefetch_on_hit k user_prefix
--       items sizes users preds pred_sizes   (space-separated; '-' = no prediction)
local function batch(keys, args)
  local k = {lru = keys[1], size = keys[2], pf = keys[3], meta = keys[4]}
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
    local c, size = items[i], tonumber(sizes[i])
    local hit = redis.call('ZSCORE', k.lru, c)
    if hit then
      st.tick = st.tick + 1
      redis.call('ZADD', k.lru, st.tick, c)
      if redis.call('HDEL', k.pf, c) == 1 then
        pf_used = pf_used + 1; st.pfw = st.pfw - (st.items and 1 or size)
      end
      flags[i] = '1'
    else
      admit(k, st, c, size, false)
      flags[i] = '0'
    end
    req_bytes = req_bytes + size
    if kk > 0 then
      last_user[users[i]] = i
      if on_hit or not hit then
        for j = (i - 1) * kk + 1, i * kk do
          local p, ps = preds[j], tonumber(psizes[j])
          local pw = st.items and 1 or ps
          if p ~= '-' and pf_bytes0 + pf_bytes + ps <= budget * req_bytes
             and st.pfw + pw <= pf_cap and not redis.call('ZSCORE', k.lru, p) then
            if admit(k, st, p, ps, true) then pf_n = pf_n + 1; pf_bytes = pf_bytes + ps end
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

redis.register_function('edgecache_batch_v1', batch)
"""
