"""The Lua scripts that make every shared decision atomic inside Redis (``EVALSHA``).

Each script reads the clock with ``TIME`` inside Redis, so replicas whose clocks disagree
still share one bucket, one lease table and one breaker timeline. Every key a script
touches is passed in ``KEYS`` and carries the ``{prefix}`` hash tag (one Redis Cluster slot).
"""

from __future__ import annotations

NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

TOKEN_BUCKET = NOW + """
-- KEYS[1] bucket hash; ARGV[1] rate (tokens/s), ARGV[2] burst. Returns 1 (allowed) or 0.
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate) * 1000) + 1000)
return allowed
"""

CONNECTIONS = NOW + """
-- KEYS[1] per-principal hash replica -> connections; KEYS[2] replicas hash replica -> lease expiry.
-- ARGV[1] this replica, ARGV[2] its connections for the principal once this one is admitted,
-- ARGV[3] the cap, ARGV[4] key lifetime (ms). Counts of replicas whose lease expired are dropped.
-- Returns 1 (admitted, count recorded) or 0 (refused, nothing changed).
local others = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local replica = fields[i]
  if replica ~= ARGV[1] then
    local expiry = tonumber(redis.call('HGET', KEYS[2], replica) or '0')
    if expiry > now then
      others = others + tonumber(fields[i + 1])
    else
      redis.call('HDEL', KEYS[1], replica)
    end
  end
end
if others + tonumber(ARGV[2]) > tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""

SET_COUNT = """
-- KEYS[1] per-principal hash; ARGV[1] replica, ARGV[2] its current count, ARGV[3] key lifetime (ms).
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""

HEARTBEAT = NOW + """
-- KEYS[1] replicas hash; ARGV[1] this replica, ARGV[2] lease (s). Renews the lease, forgets
-- expired ones, returns how many replicas hold a live lease.
redis.call('HSET', KEYS[1], ARGV[1], tostring(now + tonumber(ARGV[2])))
local live = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if tonumber(fields[i + 1]) > now then
    live = live + 1
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
return live
"""

_BREAKER_REFRESH = """
-- KEYS[1] breaker hash (state, opened_at); KEYS[2] failures hash principal -> count;
-- ARGV[1] threshold, ARGV[2] reset_after (s). Open -> half-open once reset_after has passed.
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
if state == 'open' and now - opened >= tonumber(ARGV[2]) then
  state = 'half_open'
  redis.call('HSET', KEYS[1], 'state', state)
  redis.call('DEL', KEYS[2])
end
"""

BREAKER_STATE = NOW + _BREAKER_REFRESH + """
-- Returns {state, milliseconds since it opened, principals with counted failures}.
return {state, math.floor((now - opened) * 1000), redis.call('HLEN', KEYS[2])}
"""

BREAKER_FAILURE = NOW + _BREAKER_REFRESH + """
-- ARGV[3] the failing principal (digest), ARGV[4] key lifetime (ms). Each principal's count is
-- capped at threshold - 1, and opening needs two principals: one caller never opens it alone.
if state ~= 'open' then
  local threshold = tonumber(ARGV[1])
  local cap = math.max(threshold - 1, 1)
  local mine = redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  if mine > cap then
    redis.call('HSET', KEYS[2], ARGV[3], cap)
  end
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))
  local counts = redis.call('HVALS', KEYS[2])
  local total = 0
  for _, v in ipairs(counts) do
    total = total + math.min(tonumber(v), cap)
  end
  if #counts >= 2 and total >= threshold then
    state = 'open'
    opened = now
    redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', tostring(now))
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
    redis.call('DEL', KEYS[2])
  end
end
return {state, math.floor((now - opened) * 1000), redis.call('HLEN', KEYS[2])}
"""

BREAKER_SUCCESS = """
-- The upstream answered somewhere in the fleet: every count resets and the breaker closes.
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""

SESSION_OWNER = NOW + """
-- KEYS[1] session key, KEYS[2] replicas hash. Returns {owner or '', 1 if its lease is live}.
local owner = redis.call('GET', KEYS[1])
if not owner then
  return {'', 0}
end
local expiry = tonumber(redis.call('HGET', KEYS[2], owner) or '0')
return {owner, expiry > now and 1 or 0}
"""
