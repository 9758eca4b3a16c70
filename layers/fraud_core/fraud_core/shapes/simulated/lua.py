"""The simulated shape's Redis scripts. Every key arrives built (`online.py`); no id is parsed here."""

from __future__ import annotations

import json

from fraud_core.shapes.simulated.features import LAST_K, OUTLIER_RULES

_COMMON = """
local windows = cjson.decode(ARGV[1])
local delay, max_card = tonumber(ARGV[2]), tonumber(ARGV[3])
local CHUNK = 1000  -- unpack() is bounded by the Lua stack: never unpack more at once

local function amounts(ca, ids)
  local out = {}
  for s = 1, #ids, CHUNK do
    local part = redis.call('HMGET', ca, unpack(ids, s, math.min(s + CHUNK - 1, #ids)))
    for j = 1, #part do out[#out + 1] = tonumber(part[j]) or 0 end
  end
  return out
end

local DAY = 86400
local LAST_K = cjson.decode('@LAST_K@')
local OUTLIERS = cjson.decode('@OUTLIERS@')  -- {factor, days}

local function median(values)
  table.sort(values)
  local n = #values
  if n == 0 then return 0 end
  if n % 2 == 1 then return values[(n + 1) / 2] end
  return (values[n / 2] + values[n / 2 + 1]) / 2
end

-- The terminal's known transactions in (t - delay - max_card, t - delay], newest first (equal
-- times: larger id first, as ZREVRANGEBYSCORE orders them), and which are labelled frauds:
-- share of frauds among the last 1, 3, 10; days since the latest known fraud; the run of
-- consecutive known frauds ending at the latest known transaction, the age of its oldest and the
-- days since the known legitimate transaction before it (the window's start when none).
local function terminal_labels(tw, tf, t)
  local hi = t - delay
  local got = redis.call('ZREVRANGEBYSCORE', tw, hi, '(' .. (hi - max_card), 'WITHSCORES')
  local ids, times, fraud = {}, {}, {}
  for j = 1, #got, 2 do
    ids[#ids + 1] = got[j]
    times[#times + 1] = tonumber(got[j + 1])
  end
  for s = 1, #ids, CHUNK do
    local part = redis.call('ZMSCORE', tf, unpack(ids, s, math.min(s + CHUNK - 1, #ids)))
    for j = 1, #part do fraud[#fraud + 1] = part[j] ~= false end
  end
  local out = {}
  for _, k in ipairs(LAST_K) do
    local m, f = math.min(k, #ids), 0
    for j = 1, m do if fraud[j] then f = f + 1 end end
    out[#out + 1] = (m > 0) and (f / m) or 0
  end
  local since = (delay + max_card) / DAY
  for j = 1, #ids do
    if fraud[j] then since = (t - times[j]) / DAY; break end
  end
  local streak = 0
  while streak < #ids and fraud[streak + 1] do streak = streak + 1 end
  out[#out + 1] = since
  out[#out + 1] = streak
  out[#out + 1] = (streak > 0) and ((t - times[streak]) / DAY) or 0
  local before = (streak < #ids) and times[streak + 1] or (hi - max_card)
  out[#out + 1] = (streak > 0) and ((t - before) / DAY) or 0
  return out
end

-- (count, amount sum) per card window, then (count, frauds) per delayed terminal window, then
-- {card median 30d, card max 30d, outlier counts..., terminal labels...}; `extra` is the amount of
-- a transaction counted without being stored (peek), `self` the id of the one being observed
-- (outlier counts read the card's *earlier* transactions only).
local function stats(cw, ca, tw, tf, t, extra, self)
  local got = redis.call('ZRANGEBYSCORE', cw, '(' .. (t - max_card), t, 'WITHSCORES')
  local ids, times = {}, {}
  for j = 1, #got, 2 do
    ids[#ids + 1] = got[j]
    times[#times + 1] = tonumber(got[j + 1])
  end
  local amt = amounts(ca, ids)
  local out = {}
  for _, w in ipairs(windows) do
    local lo, n, total = t - w * DAY, 0, 0
    for j = 1, #ids do
      if times[j] > lo then n = n + 1; total = total + amt[j] end
    end
    if extra then n = n + 1; total = total + extra end
    out[#out + 1] = {n, total}
  end
  local hi = t - delay
  for _, w in ipairs(windows) do
    local lo = '(' .. (hi - w * DAY)
    out[#out + 1] = {redis.call('ZCOUNT', tw, lo, hi), redis.call('ZCOUNT', tf, lo, hi)}
  end
  local month, biggest = {}, 0
  for j = 1, #amt do month[j] = amt[j]; biggest = math.max(biggest, amt[j]) end
  if extra then month[#month + 1] = extra; biggest = math.max(biggest, extra) end
  local mid = median(month)
  local extended = {mid, biggest}
  -- One pass; most amounts are under every limit, so the rules are checked for few of them.
  local limits, starts, counts, lowest = {}, {}, {}, math.huge
  for r, rule in ipairs(OUTLIERS) do
    limits[r], starts[r], counts[r] = rule[1] * mid, t - rule[2] * DAY, 0
    lowest = math.min(lowest, limits[r])
  end
  for j = 1, #ids do
    local a = amt[j]
    if a > lowest and ids[j] ~= self then
      for r = 1, #limits do
        if a > limits[r] and times[j] > starts[r] then counts[r] = counts[r] + 1 end
      end
    end
  end
  for r = 1, #counts do extended[#extended + 1] = counts[r] end
  for _, v in ipairs(terminal_labels(tw, tf, t)) do extended[#extended + 1] = v end
  out[#out + 1] = extended
  return out
end
"""
_COMMON = _COMMON.replace("@LAST_K@", json.dumps(list(LAST_K))).replace(
    "@OUTLIERS@", json.dumps([list(rule) for rule in OUTLIER_RULES])
)

# ARGV: windows, delay, max card window, ttl, lateness, max terminal window, observed state, items
# item: seen, feat, cw, ca, tw, tf keys, then transaction id, epoch, amount, payload fingerprint
# A `fraud:seen` value is "<state>:<fingerprint>[:<batch>]" (written here or by the stream's
# claim script); the same id with another fingerprint is a conflict: nothing is written, nothing
# returned.
OBSERVE_LUA = (
    _COMMON
    + """
local ttl, lateness, max_term = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local observed = ARGV[7]
local items = cjson.decode(ARGV[8])
local out = {}
for i, it in ipairs(items) do
  local seen, feat, cw, ca, tw, tf = it[1], it[2], it[3], it[4], it[5], it[6]
  local id, t, amount, fp = it[7], tonumber(it[8]), it[9], it[10]
  local prev = redis.call('GET', seen)
  if prev then
    local state, pfp = string.match(prev, '^(%a+):(%x+)')
    if pfp and pfp ~= fp then
      out[i] = {'conflict', ''}
    else
      out[i] = {state or prev, redis.call('GET', feat) or ''}
    end
  else
    redis.call('ZADD', cw, t, id)
    redis.call('HSET', ca, id, amount)
    redis.call('ZADD', tw, t, id)
    local encoded = cjson.encode(stats(cw, ca, tw, tf, t, nil, id))
    redis.call('SET', feat, encoded, 'EX', ttl)
    redis.call('SET', seen, observed .. ':' .. fp, 'EX', ttl)
    local card_cut = '(' .. (t - max_card - lateness)
    local old = redis.call('ZRANGEBYSCORE', cw, '-inf', card_cut)
    for s = 1, #old, CHUNK do
      redis.call('HDEL', ca, unpack(old, s, math.min(s + CHUNK - 1, #old)))
    end
    redis.call('ZREMRANGEBYSCORE', cw, '-inf', card_cut)
    local term_cut = '(' .. (t - max_term - lateness)
    redis.call('ZREMRANGEBYSCORE', tw, '-inf', term_cut)
    redis.call('ZREMRANGEBYSCORE', tf, '-inf', term_cut)
    for _, key in ipairs({cw, ca, tw, tf}) do redis.call('EXPIRE', key, ttl) end
    out[i] = {'new', encoded}
  end
end
return out
"""
)

# Read-only twin of the observe script: the current transaction counts in its card windows
# without being stored. item: cw, ca, tw, tf keys, then epoch, amount
PEEK_LUA = (
    _COMMON
    + """
local items = cjson.decode(ARGV[4])
local out = {}
for i, it in ipairs(items) do
  out[i] = cjson.encode(stats(it[1], it[2], it[3], it[4], tonumber(it[5]), tonumber(it[6]), nil))
end
return out
"""
)

# item: terminal fraud set key, transaction id, epoch
# item: terminal fraud set key, transaction id, epoch, 1 (fraud) or 0 (legitimate: a correction
# removes an earlier fraud label; ZADD/ZREM make both idempotent)
LABEL_LUA = """
local ttl = tonumber(ARGV[1])
local items = cjson.decode(ARGV[2])
local changed = 0
for _, it in ipairs(items) do
  if it[4] == 1 then
    changed = changed + redis.call('ZADD', it[1], tonumber(it[3]), it[2])
    redis.call('EXPIRE', it[1], ttl)
  else
    changed = changed + redis.call('ZREM', it[1], it[2])
  end
end
return changed
"""
