-- A usage report for KEYS[1] with an injected clock (ARGV[2] = tokens): a key expired on
-- that clock is deleted first, so DECRBY recreates it with no TTL as Redis would. With Redis
-- TIME the service sends a plain DECRBY instead, as the example does.
alive(KEYS[1])
return redis.call("DECRBY", KEYS[1], ARGV[2])
