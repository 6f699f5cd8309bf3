-- The `demand` eviction mode's core: values, victim choice, eviction and admission.
-- A module of the library: this chunk returns build_core, which demand.lua calls on the
-- first FCALL (a library may not use redis.call at load time) to get the hot functions as
-- closures over local copies of the math/string functions.
--
-- Every item has a retention value v = f + beta * d: f its request count decayed with
-- half-life H (requests at this edge; LRFU / decayed LFU, kept for recently seen items even
-- when not cached, like TinyLFU's sketch), d the predicted near-future demand: the sum, over
-- the edge's users, of the probability their latest predictions give the item, decayed with
-- the faster half-life Hp and withdrawn when that user's next request replaces them. Both
-- parts use a time reference (stored value = value * 2^(age/H)), so a request or a
-- prediction costs O(1) updates. Eviction: the lowest-value entry among the `sample` entries
-- with the smallest ordering key (log2 of the value at its last update, referenced to H);
-- admission of a miss and every prefetch must beat the value of what they would evict.
--
-- KEYS (through the state table c.k, see demand.lua): dk zset cached id -> ordering key;
--   ent hash id -> 2*size + (1 while an unrequested prefetch); fq zset id -> stored f;
--   dm hash id -> stored d.
-- Arguments: none of its own; it reads the state c that demand.lua builds from the map
--   (c.cap, c.items, c.H, c.Hp, c.beta, c.sample; c.F, c.D, c.ent loaded per call).
-- Returns build_core: () -> {dload, clock, bulk, flush_keys, touch, admit}.

local function build_core()
local LN2 = 0.69314718055994531
local log, floor, huge, call, unpack = math.log, math.floor, math.huge, redis.call, unpack
-- numbers go to redis.call as Lua numbers: the server writes them exactly (shortest round-trip
-- text, or %.17g on older servers), never with Lua's 14-digit tostring

local function dload(c, ids)  -- fetch f, d and entry state of ids not seen in this call yet
  local new, seen, ent = {}, {}, c.ent
  for i = 1, #ids do
    local id = ids[i]
    if ent[id] == nil and not seen[id] then seen[id] = true; new[#new + 1] = id end
  end
  local F, D, n = c.F, c.D, #new
  local all = n > 0 and call('HLEN', c.k.ent) < n and call('HGETALL', c.k.ent)
  if all then  -- fewer entries than ids to look up: read them all (cheaper than n misses)
    local m = {}
    for j = 1, #all, 2 do m[all[j]] = all[j + 1] end
    for j = 1, n do ent[new[j]] = tonumber(m[new[j]]) or false end
  end
  for s = 1, n, 1000 do
    local e = s + 999 < n and s + 999 or n
    local f = call('ZMSCORE', c.k.fq, unpack(new, s, e))
    local d = call('HMGET', c.k.dm, unpack(new, s, e))
    local x = not all and call('HMGET', c.k.ent, unpack(new, s, e))
    for j = 1, e - s + 1 do
      local id = new[s + j - 1]
      F[id] = tonumber(f[j]) or 0; D[id] = tonumber(d[j]) or 0
      if x then ent[id] = tonumber(x[j]) or false end
    end
  end
end

local function clock(c)  -- per tick: decay factors and what is derived from them
  c.age = c.tick - c.epoch
  c.sf, c.sd = 2 ^ (-c.age / c.H), 2 ^ (-c.age / c.Hp)
  c.isf, c.ah = 1 / c.sf, c.age / c.H
end

local function dval(c, id) return c.F[id] * c.sf + c.beta * c.D[id] * c.sd end

local function bulk(cmd, key, list)
  for s = 1, #list, 1000 do call(cmd, key, unpack(list, s, s + 999 < #list and s + 999 or #list)) end
end

-- the ordering key: log2 of the value referenced to the frequency half-life, so it does not
-- change while only the frequency part decays
local function dkey(c, v)
  if v < 1e-300 then v = 1e-300 end
  return log(v) / LN2 + c.ah
end

local function flush_keys(c)  -- write the ordering keys changed since the last flush
  local add, rem = {}, {}
  for id in pairs(c.kd) do add[#add + 1] = dkey(c, dval(c, id)); add[#add + 1] = id end
  for id in pairs(c.gone) do rem[#rem + 1] = id end
  bulk('ZADD', c.k.dk, add); bulk('ZREM', c.k.dk, rem)
  c.kd, c.gone = {}, {}
end

local function touch(c, id)  -- a cached entry's value changed: re-key it, maybe a victim now
  if not c.ent[id] then return end
  c.kd[id] = true
  local v = c.F[id] * c.sf + c.beta * c.D[id] * c.sd
  if not c.cands[id] and c.ncand > 0 and dkey(c, v) < c.thresh then
    c.cands[id] = true; c.ncand = c.ncand + 1
  end
  local vid = c.vid
  if vid == id then c.vid = nil elseif vid and v < dval(c, vid) then c.vid = id end
end

local function refill(c, m)  -- victim candidates: the m entries with the lowest keys
  flush_keys(c)
  local ids = call('ZRANGE', c.k.dk, 0, m - 1, 'WITHSCORES')
  local got = {}
  for j = 1, #ids, 2 do got[#got + 1] = ids[j] end
  dload(c, got)
  local cands, n, thresh, ent = {}, 0, -huge, c.ent
  for j = 1, #ids, 2 do
    if ent[ids[j]] then
      cands[ids[j]] = true; n = n + 1
      local s = tonumber(ids[j + 1])
      if s > thresh then thresh = s end
    end
  end
  c.cands, c.ncand, c.thresh = cands, n, thresh
  return #got
end

local function lowest(c, skip)  -- the candidate with the lowest value now (ties: smaller id)
  local F, D, sf, sd, beta = c.F, c.D, c.sf, c.sd, c.beta
  local best, bv
  for id in pairs(c.cands) do
    if not skip[id] then
      local v = F[id] * sf + beta * D[id] * sd
      if not best or v < bv or (v == bv and id < best) then best, bv = id, v end
    end
  end
  return best, bv
end

local function weight(c, id) return c.items and 1 or floor(c.ent[id] / 2) end

local function pick_many(c, w)  -- victims until weight w fits: (ids, total value)
  local out, skip, tot, used, m = {}, {}, 0, c.used, c.sample
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
  if #out == 0 then return nil, tot end
  return out, tot
end

local NONE = {}  -- an empty skip set (never written)

local function pick(c, w)  -- cheapest entries that free room for weight w: (id or ids, total value)
  if c.used + w <= c.cap then return nil, 0 end
  if c.items and c.vid and c.vtick == c.tick then return c.vid, dval(c, c.vid) end
  if c.ncand == 0 or c.ncand > 4 * c.sample then refill(c, c.sample) end
  local id, v = lowest(c, NONE)
  if id and c.used - weight(c, id) + w <= c.cap then  -- one victim is enough (the usual case)
    if c.items then c.vid, c.vtick = id, c.tick end
    return id, v
  end
  return pick_many(c, w)
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
  if vic then
    if gate and dval(c, id) <= vv then return false end
    if type(vic) == 'table' then for j = 1, #vic do evict(c, vic[j]) end else evict(c, vic) end
  end
  c.ent[id] = 2 * size + (pf and 1 or 0); c.entd[id] = true; c.gone[id] = nil
  c.used = c.used + w
  if pf then c.pfw = c.pfw + w end
  touch(c, id)
  return true
end

return {dload = dload, clock = clock, bulk = bulk, flush_keys = flush_keys,
        touch = touch, admit = admit}
end

return build_core
