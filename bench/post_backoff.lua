-- wrk script for bench/priority_tiers.py: bench/post.lua's POST, from a client that
-- honours Retry-After. After a 503 the connection waits 1 s (the gateway's
-- Retry-After for a full queue) before its next request, as a well-behaved client
-- does; a closed loop that retried at once would flood the web processes with
-- refusals instead of overloading the model's queue.
dofile(os.getenv("BENCH_POST_LUA"))
local refused = false
function response(status, headers, body)
  if status == 503 then
    refused = true
  end
end
function delay()
  if refused then
    refused = false
    return 1000
  end
  return 0
end
