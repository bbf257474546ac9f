-- A member's read (dashboard, leaderboard) as a member drawn from the whole population.
-- Data: { path, subjects_file (one member a line: a JWT or a member pk, in a random
--         permutation of the seeded members), header_format ("Bearer %s", or "" for none),
--         body_format (string.format pattern, "%s" the subject when body_has_subject),
--         body_has_subject, draw = "uniform" | "zipf" | "hot", zipf_s, hot }
-- uniform: any member alike; zipf: the k-th member of the permutation with probability
-- proportional to 1 / k^zipf_s; hot: uniform over the first `hot` members only.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local data = dofile(os.getenv("BENCH_LUA_DATA"))
local subjects = {}
for line in io.lines(data.subjects_file) do
   subjects[#subjects + 1] = line
end
local n = #subjects
if data.draw == "hot" then n = math.min(n, data.hot) end
local cdf = nil

function init(args)
   math.randomseed(os.time() * 100 + (thread_id or 0))
   if data.draw == "zipf" then
      cdf = {}
      local total = 0
      for k = 1, n do
         total = total + k ^ (-data.zipf_s)
         cdf[k] = total
      end
      for k = 1, n do cdf[k] = cdf[k] / total end
   end
end

local function draw()
   if cdf == nil then return math.random(n) end
   local u, lo, hi = math.random(), 1, n
   while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] < u then lo = mid + 1 else hi = mid end
   end
   return lo
end

function request()
   local subject = subjects[draw()]
   local headers = { ["Content-Type"] = "application/json" }
   if data.header_format ~= "" then
      headers["Authorization"] = string.format(data.header_format, subject)
   end
   local body = data.body_format
   if data.body_has_subject then body = string.format(data.body_format, subject) end
   return wrk.format("POST", data.path, headers, body)
end
