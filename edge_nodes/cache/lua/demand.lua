-- The `demand` eviction mode's batch function: user predictions, write-back and the request
-- loop (the values, eviction and admission are in demand_core.lua, passed in as this chunk's
-- argument). Registers `edgecache_demand`; built on the first call, like the core.
--
-- KEYS: dk ent fq dm (see demand_core.lua); meta hash: tick, epoch, used, pfw
-- ARGV[1]: one msgpack map with named fields:
--   capacity, unit ('items'|'bytes'), prediction_ttl_s, prefetch_budget, prefetch_cap,
--   prefetch_on_hit (bool), freq_half_life (H), pred_half_life (Hp), pred_weight (beta),
--   evict_sample, history_entries, admission (bool), prefetch_price, user_prefix: the cache's settings
--   requested_bytes, prefetch_bytes, origin_bytes: the edge's byte counters before this batch
--   price_scale: this batch's multiplier of prefetch_price (the origin controller's, shadow.py)
--   origin_ratio, shadow_origin (optional array, one per request): the shadow cache's origin
--   bytes through each request (shadow.py); a prediction is prefetched only while the edge's
--   origin bytes, it included, stay <= origin_ratio x the shadow's
--   k: predictions per request; items, sizes, users: one per request (arrays);
--   preds, pred_sizes: k per request (arrays, '-' = no prediction);
--   pred_probs: their probabilities as '%.6g' text (kept in `user:<id>`), and
--   pred_prob_values: the numbers those texts read as
-- Returns {hit flags '0'/'1' per request, prefetched, prefetched bytes (text), used, wasted}.
-- Writes `<user_prefix><user>` = 'ids;probs;tick' (comma-separated, with a TTL).

local build_core = ...  -- demand_core.lua's build_core

local function build_batch(core)
local D_EPS = 1e-9
local touch, admit, dload, clock = core.touch, core.admit, core.dload, core.clock
local bulk, flush_keys, call = core.bulk, core.flush_keys, redis.call
local match, gmatch, concat, unpack, mp = string.match, string.gmatch, table.concat, unpack, cmsgpack.unpack

-- A user's predictions: {tick = t, n = n, id_1..id_n, prob_1..prob_n} as read from `user:<id>`,
-- or {tick = t, base = b} when made in this call (ids and probs are preds/probs[b+1..b+k]).
local function parse_user(raw, full)  -- full: pattern of a value with k ids and k probabilities
  if not raw then return false end
  local r = full and {match(raw, full)} or {}
  local n = #r
  if n > 0 then  -- the usual shape: one match, one table
    local k = (n - 1) / 2
    for j = k + 1, n - 1 do r[j] = tonumber(r[j]) end
    r.tick, r[n], r.n = tonumber(r[n]), nil, k
    return r
  end
  local ids, pr, tick = match(raw, '^([^;]*);([^;]*);(%S+)$')
  if not ids then return false end
  local m
  r, n, m = {tick = tonumber(tick)}, 0, 0
  for w in gmatch(ids, '[^,]+') do n = n + 1; r[n] = w end
  for w in gmatch(pr, '[^,]+') do m = m + 1; r[n + m] = tonumber(w) end
  r.n = n
  return r
end

local function full_pattern(kk)  -- 'a,b,c;pa,pb,pc;tick' for k = 3
  if kk < 1 then return nil end
  local tok = {}
  for j = 1, kk do tok[j] = '([^,;]+)' end
  local part = concat(tok, ',')
  return '^' .. part .. ';' .. part .. ';(%S+)$'
end

local function retract(c, u, preds, probs, kk)  -- withdraw the demand of the user's previous predictions
  local r = c.user[u]
  if not r then return end
  local s, D, dD, ent, sd = 2 ^ ((r.tick - c.epoch) / c.Hp), c.D, c.dD, c.ent, c.sd
  local n, base = r.n, r.base
  if base then n = kk end
  for j = 1, n do
    local id, p
    if base then id = preds[base + j]; p = id ~= '-' and probs[base + j] else id, p = r[j], r[n + j] end
    if p then
      local d = D[id] - p * s
      if d * sd < D_EPS then d = 0 end
      D[id] = d; dD[id] = true
      if ent[id] then touch(c, id) end  -- touch only acts on cached entries
    end
  end
  c.user[u] = false
end

local function rescale(c)  -- move the time reference to now so stored values stay finite
  flush_keys(c)
  local ff, fd, sh = c.sf, c.sd, c.age / c.H
  for id, f in pairs(c.F) do c.F[id] = f * ff; c.dF[id] = true end
  for id, d in pairs(c.D) do c.D[id] = d * fd; c.dD[id] = true end
  local fq = call('ZRANGE', c.k.fq, 0, -1, 'WITHSCORES')
  for j = 1, #fq, 2 do
    if c.F[fq[j]] == nil then call('ZADD', c.k.fq, tonumber(fq[j + 1]) * ff, fq[j]) end
  end
  local dm = call('HGETALL', c.k.dm)
  for j = 1, #dm, 2 do
    if c.D[dm[j]] == nil then call('HSET', c.k.dm, dm[j], tonumber(dm[j + 1]) * fd) end
  end
  local dk = call('ZRANGE', c.k.dk, 0, -1, 'WITHSCORES')
  for j = 1, #dk, 2 do call('ZADD', c.k.dk, tonumber(dk[j + 1]) - sh, dk[j]) end
  c.epoch = c.tick
  clock(c)
end

local function flush_users(c, ttl, uprefix, preds, probs, kk)  -- one SET per refreshed user
  local ids, pr = {}, {}
  for u, r in pairs(c.user) do
    if r and r.base then
      local n = 0
      for j = r.base + 1, r.base + kk do
        if preds[j] ~= '-' then n = n + 1; ids[n] = preds[j]; pr[n] = probs[j] end
      end
      call('SET', uprefix .. u, concat(ids, ',', 1, n) .. ';' .. concat(pr, ',', 1, n) .. ';' .. r.tick, 'EX', ttl)
    end
  end
end

local function flush(c, ttl, uprefix, preds, probs, kk)  -- write back what changed in this call
  flush_keys(c)
  local ent, drop = {}, {}
  for id in pairs(c.entd) do
    if c.ent[id] then ent[#ent + 1] = id; ent[#ent + 1] = c.ent[id] else drop[#drop + 1] = id end
  end
  bulk('HSET', c.k.ent, ent); bulk('HDEL', c.k.ent, drop)
  local fq, dm, gone = {}, {}, {}
  for id in pairs(c.dF) do fq[#fq + 1] = c.F[id]; fq[#fq + 1] = id end
  for id in pairs(c.dD) do
    if c.D[id] * c.sd < D_EPS then gone[#gone + 1] = id
    else dm[#dm + 1] = id; dm[#dm + 1] = c.D[id] end
  end
  bulk('ZADD', c.k.fq, fq); bulk('HSET', c.k.dm, dm); bulk('HDEL', c.k.dm, gone)
  flush_users(c, ttl, uprefix, preds, probs, kk)
  local over = call('ZCARD', c.k.fq) - c.hist_cap
  if over > 0 then call('ZPOPMIN', c.k.fq, over) end
  call('HSET', c.k.meta, 'tick', c.tick, 'epoch', c.epoch, 'used', c.used, 'pfw', c.pfw)
end

local function dstate(keys, a)  -- the call's state: settings, meta, and caches of what it read
  local m = call('HMGET', keys[5], 'tick', 'epoch', 'used', 'pfw')
  local c = {k = {dk = keys[1], ent = keys[2], fq = keys[3], dm = keys[4], meta = keys[5]},
             cap = a.capacity, items = a.unit == 'items', tick = tonumber(m[1]) or 0,
             epoch = tonumber(m[2]) or 0, used = tonumber(m[3]) or 0, pfw = tonumber(m[4]) or 0,
             H = a.freq_half_life, Hp = a.pred_half_life, beta = a.pred_weight,
             sample = a.evict_sample, hist_cap = a.history_entries, gate = a.admission,
             pf_cap = a.prefetch_cap, price = a.prefetch_price * a.price_scale,
             F = {}, D = {}, ent = {}, user = {}, dF = {}, dD = {}, wasted = 0,
             entd = {}, kd = {}, gone = {}, cands = {}, ncand = 0, thresh = -1}
  clock(c)
  return c
end

local function preload(c, items, users, preds, uprefix, kk)
  local ids, ukeys, uniq = {}, {}, {}
  for i = 1, #items do ids[#ids + 1] = items[i] end
  for i = 1, #preds do if preds[i] ~= '-' then ids[#ids + 1] = preds[i] end end
  for i = 1, #users do
    local u = users[i]
    if not uniq[u] then uniq[u] = true; ukeys[#ukeys + 1] = u end
  end
  local full = full_pattern(kk)
  for s = 1, #ukeys, 1000 do
    local part = {}
    for j = s, s + 999 < #ukeys and s + 999 or #ukeys do part[#part + 1] = uprefix .. ukeys[j] end
    local raw = call('MGET', unpack(part))
    for j = 1, #raw do
      local r = parse_user(raw[j], full)
      c.user[ukeys[s + j - 1]] = r
      if r then for k = 1, r.n do ids[#ids + 1] = r[k] end end
    end
  end
  dload(c, ids)
end

local function predict(c, u, preds, probs, base, kk)  -- add the user's new predicted demand
  local D, dD, sd, ent = c.D, c.dD, c.sd, c.ent
  for j = base + 1, base + kk do
    local p = preds[j]
    if p ~= '-' then
      D[p] = D[p] + probs[j] / sd; dD[p] = true
      if ent[p] then touch(c, p) end
    end
  end
  c.user[u] = {tick = c.tick, base = base}
end

-- Value per byte: a prediction is fetched only if its expected requests before eviction (the
-- edge's decayed demand d for it: the users' latest probabilities, this user's included) times
-- its size exceed its fetch bytes times the price, i.e. d > price; then, as before, only within
-- the budget, within the origin limit (lim: nil = none) and if its value beats the victim's.
-- Price 0 keeps every prediction.
local function prefetch(c, preds, psizes, base, kk, budget, req_bytes, pf, lim)  -- pf: {n, bytes, bytes0}
  local price, D, sd = c.price, c.D, c.sd
  for j = base + 1, base + kk do
    local p, ps = preds[j], psizes[j]
    local pw = c.items and 1 or ps
    if p ~= '-' and not c.ent[p] and (price <= 0 or D[p] * sd * ps > price * ps)
       and pf[3] + pf[2] + ps <= budget * req_bytes and c.pfw + pw <= c.pf_cap
       and (not lim or c.origin + ps <= lim) and admit(c, p, ps, true, true) then
      pf[1] = pf[1] + 1; pf[2] = pf[2] + ps; c.origin = c.origin + ps
    end
  end
end

local function demand_batch(keys, args)
  local a = mp(args[1])
  local c = dstate(keys, a)
  local ttl, budget, req_bytes, pf = a.prediction_ttl_s, a.prefetch_budget, a.requested_bytes, {0, 0, a.prefetch_bytes}
  local on_hit, kk, uprefix = a.prefetch_on_hit, a.k, a.user_prefix
  local items, sizes, users = a.items, a.sizes, a.users
  local preds, psizes, probs, pnum = a.preds, a.pred_sizes, a.pred_probs, a.pred_prob_values
  local shadow, ratio = a.shadow_origin, a.origin_ratio
  c.origin = a.origin_bytes
  preload(c, items, users, preds, uprefix, kk)
  local flags, pf_used, limit, F, dF = {}, 0, 500 * math.min(c.H, c.Hp), c.F, c.dF
  for i = 1, #items do
    c.tick = c.tick + 1
    clock(c)
    if c.age > limit then rescale(c); F, dF = c.F, c.dF end
    local id, size, u = items[i], sizes[i], users[i]
    local e = c.ent[id]
    local refresh = kk > 0 and (on_hit or not e)
    if refresh then retract(c, u, preds, pnum, kk) end
    F[id] = F[id] + c.isf; dF[id] = true
    if e then
      flags[i] = '1'
      if e % 2 == 1 then
        pf_used = pf_used + 1; c.pfw = c.pfw - (c.items and 1 or size)
        c.ent[id] = e - 1; c.entd[id] = true
      end
      touch(c, id)
    else
      flags[i] = '0'
      c.origin = c.origin + size
      admit(c, id, size, false, c.gate)
    end
    req_bytes = req_bytes + size
    if refresh then
      predict(c, u, preds, pnum, (i - 1) * kk, kk)
      prefetch(c, preds, psizes, (i - 1) * kk, kk, budget, req_bytes, pf, shadow and ratio * shadow[i])
    end
  end
  flush(c, ttl, uprefix, preds, probs, kk)
  return {concat(flags), pf[1], string.format('%d', pf[2]), pf_used, c.wasted}
end

return demand_batch
end

local batch_fn
redis.register_function('edgecache_demand', function(keys, args)
  if not batch_fn then batch_fn = build_batch(build_core()) end
  return batch_fn(keys, args)
end)
