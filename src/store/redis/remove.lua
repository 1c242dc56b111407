-- One route's delete with the ownership check, as one atomic step.
-- KEYS: route, settings, owner, certificate, rules, wake.
-- ARGV: owner or "", channel, notice.
-- Returns 'deleted:<n>', 'kept' (not this owner's route) or 'owned:<owner>'.
local current = redis.call('GET', KEYS[3])
if ARGV[1] == '' then
  if current then return 'owned:' .. current end
elseif current ~= ARGV[1] then
  return 'kept'
end
local deleted = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 'deleted:' .. deleted
