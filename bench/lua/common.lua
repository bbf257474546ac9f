-- Shared by the workload scripts (each loads it with dofile): thread ids, counting responses
-- that report errors, and a one-line JSON summary from done().
--
-- Environment: BENCH_LUA_DIR (this folder), BENCH_LUA_DATA (the workload's data file, a Lua
-- file returning a table, written by bench/workloads.py).

local threads = {}

-- Runs in the main Lua state, once per thread, before the thread's init().
function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_id", #threads)
end

-- Per-thread globals, read back by done() through thread:get().
bad_bodies = 0          -- 2xx responses whose body holds GraphQL "errors" or userErrors
first_bad_body = ""     -- the first such body, or the first non-2xx body

function response(status, headers, body)
   local bad = status < 200 or status > 299
   if not bad and (body:find('"errors"', 1, true) or body:find('"userErrors":[{', 1, true)) then
      bad_bodies = bad_bodies + 1
      bad = true
   end
   if bad and first_bad_body == "" then
      first_bad_body = tostring(status) .. " " .. body:sub(1, 2000)
   end
end

local function json_string(s)
   local escaped = s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end)
   return '"' .. escaped .. '"'
end

function done(summary, latency, requests)
   local bad, first = 0, ""
   for _, thread in ipairs(threads) do
      bad = bad + (thread:get("bad_bodies") or 0)
      local body = thread:get("first_bad_body") or ""
      if first == "" then first = body end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d},' ..
      '"non_2xx":%d,"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
      '"error_bodies":%d,"first_bad_body":%s}\n',
      summary.requests, summary.duration, summary.bytes,
      latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, e.status, e.connect, e.read, e.write, e.timeout, bad, json_string(first)))
end
