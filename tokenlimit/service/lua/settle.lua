-- Reserve mode usage report for one key: return the average outstanding reservation, charge
-- the real tokens, update the running average. KEYS[1] balance, KEYS[3..5] reserved tokens,
-- count, average. ARGV[2] = tokens, ARGV[3] = the rule's redis_expired_seconds or "" when the
-- key matches no rule (no average is kept), ARGV[4] = the average's weight.
local tokens = tonumber(ARGV[2])
local pending = get_number(KEYS[3]) or 0
local count = get_number(KEYS[4]) or 0
local credit = 0
if count > 0 then
  credit = math.floor(pending / count)
  redis.call("DECRBY", KEYS[3], credit)
  redis.call("DECRBY", KEYS[4], 1)
end
alive(KEYS[1])
redis.call("DECRBY", KEYS[1], tokens - credit)
if ARGV[3] ~= "" then
  local weight = tonumber(ARGV[4])
  local average = get_number(KEYS[5])
  local next_average
  if average == nil then
    next_average = tokens
  else
    next_average = -math.floor(-(average * (weight - 1) + tokens) / weight)
  end
  if next_average < 0 then
    next_average = 0
  end
  put(KEYS[5], next_average, tonumber(ARGV[3]))
end
return 1
