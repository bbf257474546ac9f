-- The member dashboard: the same request body each time, as a random member of a pool.
-- Data: { method, path, body, credentials = { "Bearer ...", ... } }
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local data = dofile(os.getenv("BENCH_LUA_DATA"))
local credentials = data.credentials

function init(args)
   math.randomseed(os.time() * 100 + (thread_id or 0))
end

function request()
   local headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = credentials[math.random(#credentials)],
   }
   return wrk.format(data.method, data.path, headers, data.body)
end
