"""The demand-aware mode of the edge cache, server side (Lua, in the `edgecache` library).

Every item has a retention value v = f + beta * d: f is its request count decayed with
half-life H (requests at this edge; LRFU / decayed LFU, kept for recently seen items even
when not cached, like TinyLFU's sketch), d the predicted near-future demand: the sum, over
the edge's users, of the probability their latest predictions give the item, decayed with
the faster half-life Hp and withdrawn when that user's next request replaces them.
Both parts use a time reference (stored value = value * 2^(age/H)), so a request or a
prediction costs O(1) updates. Eviction: the lowest-value entry among the `sample` entries
with the smallest ordering key (log2 of the value at its last update, referenced to H);
admission of a miss and every prefetch must beat the value of what they would evict.

Keys: `dk` zset cached content id -> ordering key; `ent` hash id -> 2*size + (1 while an
unrequested prefetch); `fq` zset id -> stored f (trimmed to the `hist_cap` largest);
`dm` hash id -> stored d; `meta` hash tick, epoch, used, pfw;
`user:<id>` string 'ids;probs;tick' (the user's predictions, comma-separated, with a TTL).
"""

DEMAND_LUA = r"""
local LN2, D_EPS = 0.69314718055994531, 1e-9  -- no math library at load time
local function fmt(x) return string.format('%.17g', x) end

local function chunked(cmd, key, list, f)
  for s = 1, #list, 1000 do
    local r = redis.call(cmd, key, unpack(list, s, math.min(#list, s + 999)))
    for j = 1, #r do f(s + j - 1, r[j]) end
  end
end

local function dload(c, ids)  -- fetch f, d and entry state of ids not seen in this call yet
  local new, seen = {}, {}
  for _, id in ipairs(ids) do
    if c.ent[id] == nil and not seen[id] then seen[id] = true; new[#new + 1] = id end
  end
  if #new == 0 then return end
  chunked('ZMSCORE', c.k.fq, new, function(i, v) c.F[new[i]] = tonumber(v) or 0 end)
  chunked('HMGET', c.k.dm, new, function(i, v) c.D[new[i]] = tonumber(v) or 0 end)
  chunked('HMGET', c.k.ent, new, function(i, v) c.ent[new[i]] = tonumber(v) or false end)
end

local function clock(c)
  c.age = c.tick - c.epoch
  c.sf, c.sd = 2 ^ (-c.age / c.H), 2 ^ (-c.age / c.Hp)
end

local function dval(c, id) return c.F[id] * c.sf + c.beta * c.D[id] * c.sd end

local function bulk(cmd, key, list)
  for s = 1, #list, 1000 do redis.call(cmd, key, unpack(list, s, math.min(#list, s + 999))) end
end

-- the ordering key: log2 of the value referenced to the frequency half-life, so it does not
-- change while only the frequency part decays
local function dkey(c, v) return math.log(math.max(v, 1e-300)) / LN2 + c.age / c.H end

local function flush_keys(c)  -- write the ordering keys changed since the last flush
  local add, rem = {}, {}
  for id in pairs(c.kd) do add[#add + 1] = fmt(dkey(c, dval(c, id))); add[#add + 1] = id end
  for id in pairs(c.gone) do rem[#rem + 1] = id end
  bulk('ZADD', c.k.dk, add); bulk('ZREM', c.k.dk, rem)
  c.kd, c.gone = {}, {}
end

local function touch(c, id)  -- a cached entry's value changed: re-key it, maybe a victim now
  if not c.ent[id] then return end
  c.kd[id] = true
  local v = dval(c, id)
  if not c.cands[id] and c.ncand > 0 and dkey(c, v) < c.thresh then
    c.cands[id] = true; c.ncand = c.ncand + 1
  end
  if c.vid == id then c.vid = nil elseif c.vid and v < dval(c, c.vid) then c.vid = id end
end

local function refill(c, m)  -- victim candidates: the m entries with the lowest keys
  flush_keys(c)
  local ids = redis.call('ZRANGE', c.k.dk, 0, m - 1, 'WITHSCORES')
  local got = {}
  for j = 1, #ids, 2 do got[#got + 1] = ids[j] end
  dload(c, got)
  c.cands, c.ncand, c.thresh = {}, 0, -math.huge
  for j = 1, #ids, 2 do
    if c.ent[ids[j]] then
      c.cands[ids[j]] = true; c.ncand = c.ncand + 1; c.thresh = math.max(c.thresh, tonumber(ids[j + 1]))
    end
  end
  return #got
end

local function lowest(c, skip)  -- the candidate with the lowest value now (ties: smaller id)
  local best, bv
  for id in pairs(c.cands) do
    if not skip[id] then
      local v = dval(c, id)
      if not best or v < bv or (v == bv and id < best) then best, bv = id, v end
    end
  end
  return best, bv
end

local function weight(c, id) return c.items and 1 or math.floor(c.ent[id] / 2) end

local function pick(c, w)  -- cheapest entries that free room for weight w: (ids, total value)
  if c.used + w <= c.cap then return {}, 0 end
  if c.items and c.vid and c.vtick == c.tick then return {c.vid}, dval(c, c.vid) end
  local out, skip, tot, used, m = {}, {}, 0, c.used, c.sample
  if c.ncand == 0 or c.ncand > 4 * c.sample then refill(c, m) end
  while used + w > c.cap do
    local id, v = lowest(c, skip)
    if not id then
      m = m * 2
      local got = refill(c, m)
      id, v = lowest(c, skip)
      if not id or got == 0 then break end
    end
    out[#out + 1] = id; skip[id] = true; tot = tot + v; used = used - weight(c, id)
  end
  if c.items then c.vid, c.vtick = out[1], c.tick end  -- reused until this tick ends or it changes
  return out, tot
end

local function evict(c, id)
  local e, w = c.ent[id], weight(c, id)
  c.ent[id] = false; c.entd[id] = true; c.gone[id] = true; c.kd[id] = nil
  if c.cands[id] then c.cands[id] = nil; c.ncand = c.ncand - 1 end
  if c.vid == id then c.vid = nil end
  c.used = c.used - w
  if e % 2 == 1 then c.pfw = c.pfw - w; c.wasted = c.wasted + 1 end
end

local function admit(c, id, size, pf, gate)  -- insert if it beats what it evicts (when gated)
  local w = c.items and 1 or size
  if w > c.cap then return false end
  local vic, vv = pick(c, w)
  if #vic > 0 and gate and dval(c, id) <= vv then return false end
  for _, x in ipairs(vic) do evict(c, x) end
  c.ent[id] = 2 * size + (pf and 1 or 0); c.entd[id] = true; c.gone[id] = nil
  c.used = c.used + w
  if pf then c.pfw = c.pfw + w end
  touch(c, id)
  return true
end
"""

DEMAND_LUA += r"""
local function parse_user(raw)
  if not raw then return false end
  local ids, pr, tick = string.match(raw, '^([^;]*);([^;]*);(%S+)$')
  if not ids then return false end
  local r = {ids = {}, probs = {}, tick = tonumber(tick)}
  for w in string.gmatch(ids, '[^,]+') do r.ids[#r.ids + 1] = w end
  for w in string.gmatch(pr, '[^,]+') do r.probs[#r.probs + 1] = tonumber(w) end
  return r
end

local function retract(c, u)  -- withdraw the demand of the user's previous predictions
  local r = c.user[u]
  if not r then return end
  local s = 2 ^ ((r.tick - c.epoch) / c.Hp)
  for j, id in ipairs(r.ids) do
    local d = c.D[id] - r.probs[j] * s
    if d * c.sd < D_EPS then d = 0 end
    c.D[id] = d; c.dD[id] = true; touch(c, id)
  end
  c.user[u] = false
end

local function rescale(c)  -- move the time reference to now so stored values stay finite
  flush_keys(c)
  local ff, fd, sh = c.sf, c.sd, c.age / c.H
  for id, f in pairs(c.F) do c.F[id] = f * ff; c.dF[id] = true end
  for id, d in pairs(c.D) do c.D[id] = d * fd; c.dD[id] = true end
  local fq = redis.call('ZRANGE', c.k.fq, 0, -1, 'WITHSCORES')
  for j = 1, #fq, 2 do
    if c.F[fq[j]] == nil then redis.call('ZADD', c.k.fq, fmt(tonumber(fq[j + 1]) * ff), fq[j]) end
  end
  local dm = redis.call('HGETALL', c.k.dm)
  for j = 1, #dm, 2 do
    if c.D[dm[j]] == nil then redis.call('HSET', c.k.dm, dm[j], fmt(tonumber(dm[j + 1]) * fd)) end
  end
  local dk = redis.call('ZRANGE', c.k.dk, 0, -1, 'WITHSCORES')
  for j = 1, #dk, 2 do redis.call('ZADD', c.k.dk, fmt(tonumber(dk[j + 1]) - sh), dk[j]) end
  c.epoch = c.tick
  clock(c)
end

local function flush(c, ttl, uprefix)  -- write back what changed in this call
  flush_keys(c)
  local ent, drop = {}, {}
  for id in pairs(c.entd) do
    if c.ent[id] then ent[#ent + 1] = id; ent[#ent + 1] = c.ent[id] else drop[#drop + 1] = id end
  end
  bulk('HSET', c.k.ent, ent); bulk('HDEL', c.k.ent, drop)
  local fq, dm, gone = {}, {}, {}
  for id in pairs(c.dF) do fq[#fq + 1] = fmt(c.F[id]); fq[#fq + 1] = id end
  for id in pairs(c.dD) do
    if c.D[id] * c.sd < D_EPS then gone[#gone + 1] = id
    else dm[#dm + 1] = id; dm[#dm + 1] = fmt(c.D[id]) end
  end
  bulk('ZADD', c.k.fq, fq); bulk('HSET', c.k.dm, dm); bulk('HDEL', c.k.dm, gone)
  for u, r in pairs(c.user) do
    if r and r.new then
      redis.call('SET', uprefix .. u, table.concat(r.ids, ',') .. ';' .. table.concat(r.praw, ',') .. ';' .. r.tick,
                 'EX', ttl)
    end
  end
  local over = redis.call('ZCARD', c.k.fq) - c.hist_cap
  if over > 0 then redis.call('ZPOPMIN', c.k.fq, over) end
  redis.call('HSET', c.k.meta, 'tick', c.tick, 'epoch', c.epoch, 'used', c.used, 'pfw', c.pfw)
end
"""

DEMAND_LUA += r"""
local function dstate(keys, args)
  local m = redis.call('HMGET', keys[5], 'tick', 'epoch', 'used', 'pfw')
  local c = {k = {dk = keys[1], ent = keys[2], fq = keys[3], dm = keys[4], meta = keys[5]},
             cap = tonumber(args[1]), items = args[2] == '1', tick = tonumber(m[1]) or 0,
             epoch = tonumber(m[2]) or 0, used = tonumber(m[3]) or 0, pfw = tonumber(m[4]) or 0,
             H = tonumber(args[17]), Hp = tonumber(args[18]), beta = tonumber(args[19]),
             sample = tonumber(args[20]), hist_cap = tonumber(args[21]), gate = args[22] == '1',
             F = {}, D = {}, ent = {}, user = {}, dF = {}, dD = {}, wasted = 0,
             entd = {}, kd = {}, gone = {}, cands = {}, ncand = 0, thresh = -1}
  clock(c)
  return c
end

local function preload(c, items, users, preds, uprefix)
  local ids, ukeys, uniq = {}, {}, {}
  for _, id in ipairs(items) do ids[#ids + 1] = id end
  for _, id in ipairs(preds) do if id ~= '-' then ids[#ids + 1] = id end end
  for _, u in ipairs(users) do
    if not uniq[u] then uniq[u] = true; ukeys[#ukeys + 1] = u end
  end
  for s = 1, #ukeys, 1000 do
    local part = {}
    for j = s, math.min(#ukeys, s + 999) do part[#part + 1] = uprefix .. ukeys[j] end
    local raw = redis.call('MGET', unpack(part))
    for j = 1, #raw do
      local r = parse_user(raw[j])
      c.user[ukeys[s + j - 1]] = r
      if r then for _, id in ipairs(r.ids) do ids[#ids + 1] = id end end
    end
  end
  dload(c, ids)
end

local function predict(c, u, preds, probs, base, kk)  -- add the user's new predicted demand
  local r = {ids = {}, probs = {}, praw = {}, tick = c.tick, new = true}
  for j = base + 1, base + kk do
    local p = preds[j]
    if p ~= '-' then
      local pr = tonumber(probs[j])
      r.ids[#r.ids + 1] = p; r.probs[#r.probs + 1] = pr; r.praw[#r.praw + 1] = probs[j]
      c.D[p] = c.D[p] + pr / c.sd; c.dD[p] = true; touch(c, p)
    end
  end
  c.user[u] = r
end

-- KEYS: dk ent fq dm meta
-- ARGV: cap unit_items ttl budget req_bytes0 pf_bytes0 pf_cap prefetch_on_hit k user_prefix
--       items sizes users preds pred_sizes pred_probs H Hp beta sample hist_cap admit
local function demand_batch(keys, args)
  local c = dstate(keys, args)
  local ttl, budget, req_bytes, pf_bytes0 = tonumber(args[3]), tonumber(args[4]), tonumber(args[5]), tonumber(args[6])
  local pf_cap, on_hit, kk, uprefix = tonumber(args[7]), args[8] == '1', tonumber(args[9]), args[10]
  local items, n = split(args[11])
  local sizes, users = split(args[12]), split(args[13])
  local preds, psizes, probs = split(args[14]), split(args[15]), split(args[16])
  preload(c, items, users, preds, uprefix)
  local flags, pf_n, pf_bytes, pf_used = {}, 0, 0, 0
  for i = 1, n do
    c.tick = c.tick + 1
    clock(c)
    if c.age > 500 * math.min(c.H, c.Hp) then rescale(c) end
    local id, size, u = items[i], tonumber(sizes[i]), users[i]
    local e = c.ent[id]
    local refresh = kk > 0 and (on_hit or not e)
    if refresh then retract(c, u) end
    c.F[id] = c.F[id] + 1 / c.sf; c.dF[id] = true
    if e then
      flags[i] = '1'
      if e % 2 == 1 then
        pf_used = pf_used + 1; c.pfw = c.pfw - (c.items and 1 or size)
        c.ent[id] = e - 1; c.entd[id] = true
      end
      touch(c, id)
    else
      flags[i] = '0'
      admit(c, id, size, false, c.gate)
    end
    req_bytes = req_bytes + size
    if refresh then
      predict(c, u, preds, probs, (i - 1) * kk, kk)
      for j = (i - 1) * kk + 1, i * kk do
        local p, ps = preds[j], tonumber(psizes[j])
        local pw = c.items and 1 or ps
        if p ~= '-' and not c.ent[p] and pf_bytes0 + pf_bytes + ps <= budget * req_bytes
           and c.pfw + pw <= pf_cap and admit(c, p, ps, true, true) then
          pf_n = pf_n + 1; pf_bytes = pf_bytes + ps
        end
      end
    end
  end
  flush(c, ttl, uprefix)
  return {table.concat(flags), pf_n, string.format('%d', pf_bytes), pf_used, c.wasted}
end

redis.register_function('edgecache_demand_v1', demand_batch)
"""
