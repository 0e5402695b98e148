-- GCRA rate limiter with CL.THROTTLE's arguments and reply, for redis-server in `strata-bench kv`.
-- KEYS[1] holds the theoretical arrival time (TAT) in microseconds; ARGV = max_burst, count, period [, quantity].
-- emission interval = period / count; delay tolerance = emission interval * (max_burst + 1), the limit
-- CL.THROTTLE reports (the same definition strata's native command uses).
-- Reply: limited (0/1), limit, remaining, retry_after seconds (-1 when allowed), reset_after seconds.
local burst = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local quantity = tonumber(ARGV[4] or '1')
local limit = burst + 1
local emission = math.floor(period * 1000000 / count)
local tolerance = emission * limit
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local increment = emission * quantity
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then tat = tonumber(stored) end
local new_tat = math.max(tat, now) + increment
local diff = now - (new_tat - tolerance)
local limited, retry, ttl = 0, nil, 0
if diff < 0 then
  limited = 1
  if increment <= tolerance then retry = -diff end
  ttl = tat - now
else
  ttl = new_tat - now
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.max(math.floor(ttl / 1000), 1))
end
local next = tolerance - ttl
local remaining = 0
if next > 0 then remaining = math.floor(next / emission) end
local function seconds(us)
  if us == nil then return -1 end
  local s = math.floor(us / 1000000)
  if us % 1000000 >= 1000 then s = s + 1 end
  return s
end
return {limited, limit, remaining, seconds(retry), seconds(ttl)}
