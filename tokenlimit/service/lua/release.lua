-- Reserve mode: give back a reservation made earlier in a check that ended in a deny.
-- KEYS[1] = balance, KEYS[3..4] = reserved tokens and count; ARGV[2] = tokens.
local amount = tonumber(ARGV[2])
alive(KEYS[1])
redis.call("INCRBY", KEYS[1], amount)
if alive(KEYS[3]) then
  redis.call("DECRBY", KEYS[3], amount)
end
if alive(KEYS[4]) then
  redis.call("DECRBY", KEYS[4], 1)
end
return 1
