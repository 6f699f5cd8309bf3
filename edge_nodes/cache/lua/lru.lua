-- The `lru` eviction mode: one FCALL serves a batch of requests in order (hit or admit with
-- LRU eviction, then prefetch the request's predictions), atomically on the server.
--
-- KEYS: lru  zset, member '<content id>|<size>' per cached entry, score 2*tick
--            (+1 while the entry is a prefetch nobody has requested yet)
--       meta hash: tick, used (items or bytes), pfw (weight of unrequested prefetches)
-- ARGV[1]: one msgpack map with named fields:
--   capacity, unit ('items'|'bytes'), prediction_ttl_s, prefetch_budget, prefetch_cap,
--   prefetch_on_hit (bool), user_prefix: the cache's settings
--   requested_bytes, prefetch_bytes, origin_bytes: the edge's byte counters before this batch
--   origin_ratio, shadow_origin (optional array, one per request): the shadow cache's origin
--   bytes through each request (shadow.py); a prediction is prefetched only while the edge's
--   origin bytes, it included, stay <= origin_ratio x the shadow's
--   k: predictions per request; items, sizes, users: one per request (arrays);
--   preds, pred_sizes: k per request (arrays, '-' = no prediction)
-- Returns {hit flags '0'/'1' per request, prefetched, prefetched bytes (text), used, wasted}.
-- Writes `<user_prefix><user>` = the user's top predicted ids, comma-separated, with a TTL.

-- An entry is the zset member '<content id>|<size>' so eviction needs one call (ZPOPMIN).
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

local function state(keys, a)  -- the cache's running state, read once per batch
  local m = redis.call('HMGET', keys[2], 'tick', 'used', 'pfw')
  return {cap = a.capacity, items = a.unit == 'items', tick = tonumber(m[1]) or 0,
          used = tonumber(m[2]) or 0, pfw = tonumber(m[3]) or 0, wasted = 0, origin = a.origin_bytes}
end

local function set_users(a, last_user)  -- each user's latest predictions, one SET per user
  local preds, kk = a.preds, a.k
  for u, i in pairs(last_user) do
    local top = {}
    for j = (i - 1) * kk + 1, i * kk do if preds[j] ~= '-' then top[#top + 1] = preds[j] end end
    redis.call('SET', a.user_prefix .. u, table.concat(top, ','), 'EX', a.prediction_ttl_s)
  end
end

local function prefetch(k, st, a, i, req_bytes, pf)  -- request i's predictions; pf: {n, bytes}
  local preds, psizes, kk = a.preds, a.pred_sizes, a.k
  local lim = a.shadow_origin and a.origin_ratio * a.shadow_origin[i]
  for j = (i - 1) * kk + 1, i * kk do
    local p, ps = preds[j], psizes[j]
    local pw = st.items and 1 or ps
    if p ~= '-' and a.prefetch_bytes + pf[2] + ps <= a.prefetch_budget * req_bytes
       and st.pfw + pw <= a.prefetch_cap and (not lim or st.origin + ps <= lim) then
      local pm = p .. '|' .. ps
      if not redis.call('ZSCORE', k.lru, pm) and admit(k, st, pm, ps, true) then
        pf[1] = pf[1] + 1; pf[2] = pf[2] + ps; st.origin = st.origin + ps
      end
    end
  end
end

local function batch(keys, args)
  local a = cmsgpack.unpack(args[1])
  local k = {lru = keys[1], meta = keys[2]}
  local st = state(keys, a)
  local items, sizes, users, kk, on_hit = a.items, a.sizes, a.users, a.k, a.prefetch_on_hit
  local flags, last_user, pf, pf_used, req_bytes = {}, {}, {0, 0}, 0, a.requested_bytes
  for i = 1, #items do
    local size = sizes[i]
    local member = items[i] .. '|' .. size
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
      st.origin = st.origin + size
      flags[i] = '0'
    end
    req_bytes = req_bytes + size
    if kk > 0 then
      last_user[users[i]] = i
      if on_hit or not score then prefetch(k, st, a, i, req_bytes, pf) end
    end
  end
  set_users(a, last_user)
  redis.call('HSET', k.meta, 'tick', st.tick, 'used', st.used, 'pfw', st.pfw)
  return {table.concat(flags), pf[1], tostring(pf[2]), pf_used, st.wasted}
end

redis.register_function('edgecache_lru', batch)
