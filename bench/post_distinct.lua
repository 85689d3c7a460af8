-- wrk script for bench/cache.py: the POST of bench/post.lua, but every request's first input
-- value is a different number (BENCH_COUNTER_START, then one more each request), so no two
-- requests of a run, or of runs with starts far enough apart, share a response-cache key.
local path = os.getenv("BENCH_BODY_FILE")
if path == nil or path == "" then
  error("set BENCH_BODY_FILE to the request body file (bench/run.py does)")
end
local file = assert(io.open(path, "rb"))
local body = file:read("*a")
file:close()
local head, tail = body:match('^(.-"data":%[)[^,%]]*(.*)$')
if head == nil then
  error("the body has no \"data\":[ to vary")
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_API_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
local counter = tonumber(os.getenv("BENCH_COUNTER_START") or "0")
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, head .. counter .. tail)
end
