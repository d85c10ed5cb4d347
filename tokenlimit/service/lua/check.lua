-- /ratelimit for one key, as the example: refill, then answer {balance, last refill second}.
-- The caller admits when balance > 0; now (whole seconds) comes back for retry-after.
local balance, last = refill()
if balance == nil then
  return redis.error_reply("the balance key vanished right after being written "
    .. "(redis_expired_seconds <= 0)")
end
return {balance, last, now}
