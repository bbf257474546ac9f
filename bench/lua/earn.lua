-- Earning: a purchase with a unique order id (prefix, thread, counter) for a random member.
-- Data: { path, authorization, order_prefix, members = { ... },
--         body_format = string.format pattern taking (member, order id, amount) }
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local data = dofile(os.getenv("BENCH_LUA_DATA"))
local members = data.members
local counter = 0
local headers = {
   ["Content-Type"] = "application/json",
   ["Authorization"] = data.authorization,
}

function init(args)
   math.randomseed(os.time() * 100 + (thread_id or 0))
end

function request()
   counter = counter + 1
   local order_id = data.order_prefix .. "-" .. thread_id .. "-" .. counter
   local amount = string.format("%d.%02d", math.random(1, 300), math.random(0, 99))
   local body = string.format(data.body_format, members[math.random(#members)], order_id, amount)
   return wrk.format("POST", data.path, headers, body)
end
