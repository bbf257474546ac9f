"""The Lua scripts of `LeaderboardStore` (each runs atomically inside Redis)."""

# KEYS: versions, names, then per board: zset, lock, touched, unlisted zset.
# ARGV: number of boards, their lifetimes in seconds (0: none), then per member:
#       stored member, version, display name, state, points in each board.
# State: 'L' listed (on the board), 'U' unlisted (opted out: its score is kept aside, in the
# unlisted set, for its own standing only), 'E' erased (on neither, and its name is deleted).
APPLY = """
local nb = tonumber(ARGV[1])
local locked = {}
for b = 1, nb do
  locked[b] = redis.call('EXISTS', KEYS[4 * b]) == 1
end
local written = 0
local i = nb + 2
while i <= #ARGV do
  local m = ARGV[i]
  local state = ARGV[i + 3]
  local stored = redis.call('HGET', KEYS[1], m)
  if (not stored) or tonumber(ARGV[i + 1]) >= tonumber(stored) then
    redis.call('HSET', KEYS[1], m, ARGV[i + 1])
    if state == 'E' then
      redis.call('HDEL', KEYS[2], m)
    else
      redis.call('HSET', KEYS[2], m, ARGV[i + 2])
    end
    for b = 1, nb do
      local points = ARGV[i + 3 + b]
      local listed, unlisted = KEYS[4 * b - 1], KEYS[4 * b + 2]
      if tonumber(points) > 0 and state == 'L' then
        redis.call('ZADD', listed, points, m)
        redis.call('ZREM', unlisted, m)
      elseif tonumber(points) > 0 and state == 'U' then
        redis.call('ZREM', listed, m)
        redis.call('ZADD', unlisted, points, m)
      else
        redis.call('ZREM', listed, m)
        redis.call('ZREM', unlisted, m)
      end
    end
    written = written + 1
  end
  for b = 1, nb do
    if locked[b] then redis.call('SADD', KEYS[4 * b + 1], m) end
  end
  i = i + 4 + nb
end
for b = 1, nb do
  local ttl = tonumber(ARGV[1 + b])
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[4 * b - 1], ttl)
    redis.call('EXPIRE', KEYS[4 * b + 2], ttl)
  end
  if locked[b] then redis.call('EXPIRE', KEYS[4 * b + 1], 3600) end
end
return written
"""

# KEYS: zset, built, names, unlisted zset. ARGV: first, the asking member ('' for none).
# Returns nil when the board is not built, else one JSON string (parsed by orjson: far cheaper
# than redis-py's reply parser element by element):
# [total, [member, score, ...], [name, ...], my score or false, members above me, my name].
# An opted-out member's score is in the unlisted set: its rank counts the board's members
# above it, as if it were listed. (An empty Lua table encodes as {}: the client reads it as an
# empty list.)
READ = """
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local n = tonumber(ARGV[1])
local top = {}
if n > 0 then top = redis.call('ZREVRANGE', KEYS[1], 0, n - 1, 'WITHSCORES') end
local names = {}
for i = 1, #top, 2 do names[#names + 1] = redis.call('HGET', KEYS[3], top[i]) end
local score, above, name = false, 0, false
if ARGV[2] ~= '' then
  score = redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('ZSCORE', KEYS[4], ARGV[2])
  if score then
    above = redis.call('ZCOUNT', KEYS[1], '(' .. score, '+inf')
    name = redis.call('HGET', KEYS[3], ARGV[2])
  end
end
return cjson.encode({redis.call('ZCARD', KEYS[1]), top, names, score, above, name})
"""

# KEYS: tmp, zset, built, lock, touched, tmp unlisted, unlisted. ARGV: lock token, lifetime in
# seconds (0: none). Releases the lock. Returns nil when the lock is no longer ours, else the
# members written during the rebuild (to be applied again).
SWAP = """
if redis.call('GET', KEYS[4]) ~= ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[6])
  return false
end
local ttl = tonumber(ARGV[2])
for _, pair in ipairs({{KEYS[1], KEYS[2]}, {KEYS[6], KEYS[7]}}) do
  if redis.call('EXISTS', pair[1]) == 1 then
    redis.call('RENAME', pair[1], pair[2])
    if ttl > 0 then
      redis.call('EXPIRE', pair[2], ttl)
    else
      redis.call('PERSIST', pair[2])
    end
  else
    redis.call('DEL', pair[2])
  end
end
redis.call('SET', KEYS[3], '1')
if ttl > 0 then redis.call('EXPIRE', KEYS[3], ttl) end
local touched = redis.call('SMEMBERS', KEYS[5])
redis.call('DEL', KEYS[5], KEYS[4])
return touched
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
