"""The Lua scripts of `LeaderboardStore` (each runs atomically inside Redis)."""

# KEYS: versions, names, then per board: zset, lock, touched.
# ARGV: number of boards, their lifetimes in seconds (0: none), then per member:
#       stored member, version, display name, points in each board.
APPLY = """
local nb = tonumber(ARGV[1])
local locked = {}
for b = 1, nb do
  locked[b] = redis.call('EXISTS', KEYS[3 * b + 1]) == 1
end
local written = 0
local i = nb + 2
while i <= #ARGV do
  local m = ARGV[i]
  local stored = redis.call('HGET', KEYS[1], m)
  if (not stored) or tonumber(ARGV[i + 1]) >= tonumber(stored) then
    redis.call('HSET', KEYS[1], m, ARGV[i + 1])
    redis.call('HSET', KEYS[2], m, ARGV[i + 2])
    for b = 1, nb do
      local points = ARGV[i + 2 + b]
      if tonumber(points) > 0 then
        redis.call('ZADD', KEYS[3 * b], points, m)
      else
        redis.call('ZREM', KEYS[3 * b], m)
      end
    end
    written = written + 1
  end
  for b = 1, nb do
    if locked[b] then redis.call('SADD', KEYS[3 * b + 2], m) end
  end
  i = i + 3 + nb
end
for b = 1, nb do
  local ttl = tonumber(ARGV[1 + b])
  if ttl > 0 then redis.call('EXPIRE', KEYS[3 * b], ttl) end
  if locked[b] then redis.call('EXPIRE', KEYS[3 * b + 2], 3600) end
end
return written
"""

# KEYS: zset, built, names. ARGV: first, the asking member ('' for none).
# Returns nil when the board is not built, else one JSON string (parsed by orjson: far cheaper
# than redis-py's reply parser element by element):
# [total, [member, score, ...], [name, ...], my score or false, members above me, my name].
# (An empty Lua table encodes as {}: the client reads it as an empty list.)
READ = """
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local n = tonumber(ARGV[1])
local top = {}
if n > 0 then top = redis.call('ZREVRANGE', KEYS[1], 0, n - 1, 'WITHSCORES') end
local names = {}
for i = 1, #top, 2 do names[#names + 1] = redis.call('HGET', KEYS[3], top[i]) end
local score, above, name = false, 0, false
if ARGV[2] ~= '' then
  score = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if score then
    above = redis.call('ZCOUNT', KEYS[1], '(' .. score, '+inf')
    name = redis.call('HGET', KEYS[3], ARGV[2])
  end
end
return cjson.encode({redis.call('ZCARD', KEYS[1]), top, names, score, above, name})
"""

# KEYS: tmp, zset, built, lock, touched. ARGV: lock token, lifetime in seconds (0: none).
# Releases the lock. Returns nil when the lock is no longer ours, else the members written
# during the rebuild (to be applied again).
SWAP = """
if redis.call('GET', KEYS[4]) ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  return false
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
else
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[3], '1')
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
else
  redis.call('PERSIST', KEYS[2])
end
local touched = redis.call('SMEMBERS', KEYS[5])
redis.call('DEL', KEYS[5], KEYS[4])
return touched
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
