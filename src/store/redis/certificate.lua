-- A route's stored certificate set (or, without ARGV[4], removed) by its owner.
-- KEYS: owner, certificate.
-- ARGV: owner, channel, notice, certificate, key.
-- Returns 'ok', 'unowned' or 'owned:<owner>'.
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then return current and ('owned:' .. current) or 'unowned' end
if ARGV[4] then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'certificate', ARGV[4], 'key', ARGV[5])
else
  redis.call('DEL', KEYS[2])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 'ok'
