-- Reserve mode check (see tokenlimit/service/reserve.py, the model this mirrors).
-- KEYS[3..5] = reserved tokens, reserved count, running average. ARGV[6] = fixed estimate or
-- "" for the key's running average; ARGV[7] = the estimate before the key has an average.
-- Returns {balance after refill, last refill second, tokens reserved (0 on a deny),
-- balance after the reservation, now}.
local balance, last = refill()
if balance == nil then
  return redis.error_reply("the balance key vanished right after being written "
    .. "(redis_expired_seconds <= 0)")
end
if balance <= 0 then
  return {balance, last, 0, balance, now}
end
local amount = tonumber(ARGV[6])
if amount == nil then
  amount = get_number(KEYS[5]) or tonumber(ARGV[7])
end
local after = redis.call("DECRBY", KEYS[1], amount)
local ttl = tonumber(ARGV[5])
put(KEYS[3], (get_number(KEYS[3]) or 0) + amount, ttl)
put(KEYS[4], (get_number(KEYS[4]) or 0) + 1, ttl)
return {balance, last, amount, after, now}
