-- Redeeming: a random hot member redeems one of the rewards, in turn, with a unique
-- idempotency key (prefix, thread, counter).
-- Data: { path, credentials = { "Bearer ...", ... }, key_prefix, rewards = { ... },
--         body_format = string.format pattern taking (reward, idempotency key) }
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local data = dofile(os.getenv("BENCH_LUA_DATA"))
local credentials = data.credentials
local rewards = data.rewards
local counter = 0

function init(args)
   math.randomseed(os.time() * 100 + (thread_id or 0))
end

function request()
   counter = counter + 1
   local key = data.key_prefix .. "-" .. thread_id .. "-" .. counter
   local body = string.format(data.body_format, rewards[counter % #rewards + 1], key)
   local headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = credentials[math.random(#credentials)],
   }
   return wrk.format("POST", data.path, headers, body)
end
