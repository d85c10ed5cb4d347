-- Shared by every tokenlimit script (prepended to each): the example's bucket arithmetic.
--
-- A second implementation of the ASM semantics, by necessity (it runs inside Redis): refill()
-- and check.lua must equal tokenlimit.bucket.script.check_script, reserve/release/settle.lua
-- tokenlimit.bucket.reserve.ReserveLimiter, report.lua AsmLimiter.report. Held to them by
-- tests/service/test_redis_store.py (test_decisions_and_state_equal_the_reference_model,
-- test_reserve_mode_equals_its_model) and test_cluster_store.py, against a real Redis.
--
-- ARGV[1] = now in Unix milliseconds from an injected clock, or "" to use Redis TIME.
-- With TIME the keys expire as in the example (SET then EXPIRE, Redis decides). With an
-- injected clock, expiry is judged against that clock: a key whose PEXPIRETIME has passed on
-- it counts as missing and is deleted, and writes use PEXPIREAT from it. Callers keep the
-- injected clock at or ahead of the server's, so Redis never expires a key earlier itself.

local now_ms = nil
local now
if ARGV[1] ~= "" then
  now_ms = tonumber(ARGV[1])
  now = math.floor(now_ms / 1000)
else
  now = tonumber(redis.call("TIME")[1])
end

local function alive(key)
  if now_ms == nil then
    return redis.call("EXISTS", key) == 1
  end
  local at = redis.call("PEXPIRETIME", key)
  if at == -2 then
    return false
  end
  if at >= 0 and now_ms > at then
    redis.call("DEL", key)
    return false
  end
  return true
end

local function get_number(key)
  if not alive(key) then
    return nil
  end
  return tonumber(redis.call("GET", key))
end

-- SET then expire; a non-positive TTL deletes the key, as EXPIRE does.
local function put(key, value, ttl)
  redis.call("SET", key, string.format("%d", value))
  if now_ms == nil then
    redis.call("EXPIRE", key, ttl)
  elseif ttl <= 0 then
    redis.call("DEL", key)
  else
    redis.call("PEXPIREAT", key, now_ms + ttl * 1000)
  end
end

-- The check script of the example for KEYS[1] (balance) and KEYS[2] (last refill second).
-- ARGV[2..5] = fill_interval_second, tokens_per_fill, max_tokens, redis_expired_seconds.
-- Returns the balance after the refill (nil when the key vanished) and the last refill time.
local function refill()
  local key, last_key = KEYS[1], KEYS[2]
  local interval = tonumber(ARGV[2])
  local per_fill = tonumber(ARGV[3])
  local max_tokens = tonumber(ARGV[4])
  local ttl = tonumber(ARGV[5])
  local last
  if not alive(key) or not alive(last_key) then
    put(key, per_fill, ttl)
    put(last_key, now, ttl)
    last = now
  else
    local balance = tonumber(redis.call("GET", key))
    last = tonumber(redis.call("GET", last_key))
    local intervals = math.floor((now - last) / interval)
    if intervals > 0 then
      balance = balance + per_fill * intervals
      if balance > max_tokens then
        balance = max_tokens
      end
      put(key, balance, ttl)
      put(last_key, now, ttl)
      last = now
    end
  end
  local stored = redis.call("GET", key)
  if not stored then
    return nil, last
  end
  return tonumber(stored), last
end
