-- One route's write with the ownership check, as one atomic step; the notice is
-- published by the same script, so no reader sees it without the data.
-- KEYS: route, settings, owner, rules, wake.
-- ARGV: target, owner or "", take unowned "1"/"0", channel, notice, owner it replaces
-- or "", rules (JSON, "" for none), wake (JSON, "" for none), then the settings'
-- field/value pairs.
-- Returns 'ok', 'unowned' or 'owned:<owner>'.
local current = redis.call('GET', KEYS[3])
if current and current ~= ARGV[2] and current ~= ARGV[6] then return 'owned:' .. current end
if ARGV[2] ~= '' and not current and ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return 'unowned'
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 9))
if ARGV[7] == '' then redis.call('DEL', KEYS[4]) else redis.call('SET', KEYS[4], ARGV[7]) end
if ARGV[8] == '' then redis.call('DEL', KEYS[5]) else redis.call('SET', KEYS[5], ARGV[8]) end
if ARGV[2] ~= '' then redis.call('SET', KEYS[3], ARGV[2]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 'ok'
